/**
 * The scenarios with an OpenTelemetry SDK registered (issue 11): tracer and meter providers with
 * in-memory exporters, registered once in the process that builds either app. The suite with one
 * no-op task (a span and its metrics, made by the library) against hand-written code that makes
 * one span and one histogram point for the same task, the same way.
 */
import { performance } from 'node:perf_hooks';
import {
  SpanKind,
  SpanStatusCode,
  context,
  metrics,
  trace,
  type Context,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import onFinished from 'on-finished';
import { DURATION_BUCKETS } from '../lib/telemetry';
import { silentLogger, taskFailureLog } from './logger';

let spans: InMemorySpanExporter | undefined;

/** Registers the SDK in this process, once; returns what drops the spans held so far. */
export function registerSdk(): () => void {
  if (spans === undefined) {
    spans = new InMemorySpanExporter();
    trace.setGlobalTracerProvider(
      new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }),
    );
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const reader = new PeriodicExportingMetricReader({
      exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
      exportIntervalMillis: 60_000,
    });
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  }
  // Ended spans pile up in the exporter; each app's idle() lets them go, so the heap stays flat.
  const exporter = spans;
  return () => exporter.reset();
}

/**
 * The hand-written reference: after the response, the task inside a span of its own under the
 * request's context, with the suite's attributes, and one point of a seconds histogram.
 */
export function handWrittenTracedTask(
  task: () => unknown,
): (res: Parameters<typeof onFinished>[0]) => void {
  const tracer = trace.getTracer('hand-written');
  const histogram = metrics.getMeter('hand-written').createHistogram('task.duration', {
    unit: 's',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const log = taskFailureLog(silentLogger());
  const name = task.name || 'anonymous';
  return (res) => {
    const parent: Context = context.active();
    onFinished(res, () => {
      const span = tracer.startSpan(`background task ${name}`, { kind: SpanKind.INTERNAL }, parent);
      span.setAttribute('background_task.name', name);
      span.setAttribute('background_task.attempt', 1);
      span.setAttribute('background_task.request_id', 'hand-written');
      const startedAt = performance.now();
      const end = (outcome: string) => {
        span.setAttribute('background_task.outcome', outcome);
        span.end();
        histogram.record((performance.now() - startedAt) / 1_000, {
          'background_task.name': name,
          'background_task.outcome': outcome,
        });
      };
      Promise.resolve()
        .then(() => context.with(trace.setSpan(parent, span), task))
        .then(
          () => end('succeeded'),
          (error: unknown) => {
            log(error);
            span.setStatus({ code: SpanStatusCode.ERROR });
            end('failed');
          },
        );
    });
  };
}
