/**
 * A real OpenTelemetry SDK registered globally for one test file (jest gives each file its own
 * globals): a tracer provider whose spans land in an in-memory exporter (its default sampler,
 * ParentBased(AlwaysOn): a span follows its parent's sampling decision), the AsyncLocalStorage
 * context manager, and a meter provider read on demand; and the SERVER span of each request.
 */
import {
  SpanKind,
  context,
  defaultTextMapGetter,
  metrics,
  trace,
  type Attributes,
  type SpanContext,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  AggregationTemporality,
  MeterProvider,
  MetricReader,
  type DataPoint,
  type Histogram,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import type { Request, RequestHandler } from 'express';

/** A reader that collects when asked: what a Prometheus scrape does. */
class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

export interface Otel {
  /** Every span ended so far. */
  spans(): ReadableSpan[];
  /** The spans with this name. */
  spansNamed(name: string): ReadableSpan[];
  /** Every metric of the library's meter, as the SDK has aggregated it now. */
  collect(): Promise<MetricData[]>;
}

export function registerOtel(): Otel {
  const exporter = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const reader = new OnDemandReader();
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  return {
    spans: () => exporter.getFinishedSpans(),
    spansNamed: (name) => exporter.getFinishedSpans().filter((span) => span.name === name),
    async collect() {
      const { resourceMetrics } = await reader.collect();
      return resourceMetrics.scopeMetrics
        .filter((scope) => scope.scope.name === 'express-background-tasks')
        .flatMap((scope) => scope.metrics);
    },
  };
}

/**
 * A middleware that starts a SERVER span per request, named by `name`, under the trace context of
 * the request's `traceparent` header when it has one, and runs the rest of the request inside it:
 * what @opentelemetry/instrumentation-http does. A `traceparent` with flags `00` makes the span
 * unsampled, as the SDK's default sampler follows the remote parent.
 */
export function serverSpans(name: (req: Request) => string): RequestHandler {
  const tracer = trace.getTracer('test-app');
  const propagator = new W3CTraceContextPropagator();
  return (req, res, next) => {
    const incoming = propagator.extract(context.active(), req.headers, defaultTextMapGetter);
    const span = tracer.startSpan(name(req), { kind: SpanKind.SERVER }, incoming);
    res.on('finish', () => span.end());
    context.with(trace.setSpan(incoming, span), next);
  };
}

/** The data points of metric `name` whose attributes include `match`. */
export function pointsOf<T = number>(
  all: MetricData[],
  name: string,
  match: Attributes = {},
): Array<DataPoint<T>> {
  const metric = all.find((m) => m.descriptor.name === name);
  if (metric === undefined) return [];
  return (metric.dataPoints as Array<DataPoint<T>>).filter((point) =>
    Object.entries(match).every(([key, value]) => point.attributes[key] === value),
  );
}

/** The sum of a counter's points (or of a histogram's counts) that match. */
export function total(all: MetricData[], name: string, match: Attributes = {}): number {
  return pointsOf<number | Histogram>(all, name, match).reduce(
    (sum, point) =>
      sum + (typeof point.value === 'number' ? point.value : (point.value as Histogram).count),
    0,
  );
}

/** True when `child`'s parent is the span with context `parent`. */
export function isChildOf(child: ReadableSpan, parent: SpanContext): boolean {
  return (
    child.parentSpanContext?.spanId === parent.spanId &&
    child.spanContext().traceId === parent.traceId
  );
}
