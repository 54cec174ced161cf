/**
 * What OpenTelemetry sees of background work: a span per attempt under the span that was active
 * when the task was added, a producer span per hand-off to a durable queue with its W3C trace
 * context, the duration of each attempt and the end of each task as metrics, and the pending and
 * running gauges. Only `@opentelemetry/api` is used, an optional peer (see otel-api.ts): it
 * records nothing until the application registers an SDK, nothing at all when the application
 * has not installed it, and nothing global is registered here. Called only by the observer.
 */
import type { MeterProvider, ProxyTracerProvider, Span, Tracer } from '@opentelemetry/api';
import {
  otelApi as api,
  SPAN_KIND,
  SPAN_STATUS_ERROR,
  type TaskSpanKind,
  type TraceContext,
  type TraceSpan,
} from './otel-api';
import { errorFields } from './thrown';
import type { TaskCounts } from './types';

/** The tracer's and the meter's name and version. */
export const INSTRUMENTATION_NAME = 'express-background-tasks';
/** The package's version (a test keeps it equal to package.json's). */
export const INSTRUMENTATION_VERSION = '0.1.0';

/** How one attempt ended. `left_to_workers`: drain() gave up on a transactional task while it ran. */
export type AttemptOutcome = 'succeeded' | 'failed' | 'timed_out' | 'abandoned' | 'left_to_workers';
/** How a task ended for good: its last attempt's outcome, or refused, or handed to a durable queue. */
export type TaskOutcome = AttemptOutcome | 'rejected' | 'enqueued';

/** The attribute names of spans and metrics. */
export const ATTRIBUTES = {
  name: 'background_task.name',
  attempt: 'background_task.attempt',
  requestId: 'background_task.request_id',
  outcome: 'background_task.outcome',
  jobId: 'background_task.job_id',
  durable: 'background_task.durable',
} as const;

/** Seconds, from a millisecond to five minutes: the SDK's default buckets (0, 5, 10 …) suit milliseconds. */
export const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
];

/** The W3C trace context of a hand-off, carried in the durable job's data. */
export interface TraceCarrier {
  traceparent: string;
  tracestate?: string;
}

/** What a span needs to know of the attempt it stands for. */
export interface SpanSubject {
  readonly name: string;
  readonly attempt: number;
  /** The context that was active when the task was added: its span is the attempt span's parent. */
  readonly parentContext: TraceContext | undefined;
  readonly jobId?: string;
}

// `api` is undefined when the application has not installed @opentelemetry/api: then what makes
// spans, contexts and instruments returns undefined, so what is given one (`api!`) is never called.
// The API's proxy provider: it takes the SDK's provider as its delegate whenever that is
// registered, and so does the ProxyTracer it gives out. Undefined without the API.
let proxyProvider = api?.trace.getTracerProvider() as ProxyTracerProvider | undefined;
let tracer: Tracer | undefined = proxyProvider?.getTracer(
  INSTRUMENTATION_NAME,
  INSTRUMENTATION_VERSION,
);
/** What the proxy delegates to while no tracer provider is registered. */
const NO_TRACING = api && new api.ProxyTracerProvider().getDelegate();

/**
 * True when a tracer provider is registered: a couple of property reads, so that without an SDK
 * a task costs no context lookup, no span object and no span name; one, without the API.
 */
export function tracingOn(): boolean {
  if (api === undefined) return false;
  if (proxyProvider!.getDelegate?.() !== NO_TRACING) return true;
  // The provider may have been registered through another copy of the API, or disabled and
  // registered again: then the global proxy is another object. Look again.
  const current = api.trace.getTracerProvider() as ProxyTracerProvider;
  if (current === proxyProvider) return false;
  proxyProvider = current;
  tracer = current.getTracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);
  return current.getDelegate?.() !== NO_TRACING;
}

/** The context active now, when tracing is on: taken when a task is added, to parent its spans. */
export function activeContext(): TraceContext | undefined {
  return tracingOn() ? api!.context.active() : undefined;
}

/**
 * Starts the span of an attempt: `INTERNAL` in the web process, `CONSUMER` on a worker. Returns
 * undefined when no tracer provider is registered. A span the sampler left out is returned too,
 * not recording: the task runs in its context, so what it starts is left out with it.
 */
export function startAttemptSpan(
  subject: SpanSubject,
  requestId: string,
  kind: TaskSpanKind,
): TraceSpan | undefined {
  if (!tracingOn()) return undefined;
  const span = tracer!.startSpan(
    `background task ${subject.name}`,
    { kind },
    subject.parentContext ?? api!.ROOT_CONTEXT,
  );
  if (!span.isRecording()) return span;
  span.setAttribute(ATTRIBUTES.name, subject.name);
  span.setAttribute(ATTRIBUTES.attempt, subject.attempt);
  span.setAttribute(ATTRIBUTES.requestId, requestId);
  if (subject.jobId !== undefined) span.setAttribute(ATTRIBUTES.jobId, subject.jobId);
  return span;
}

/**
 * Starts the `PRODUCER` span of a hand-off to the durable queue; undefined when no tracer provider
 * is registered. One the sampler left out still carries its trace context to the worker.
 */
export function startEnqueueSpan(subject: SpanSubject, requestId: string): TraceSpan | undefined {
  if (!tracingOn()) return undefined;
  const span = tracer!.startSpan(
    `enqueue ${subject.name}`,
    { kind: SPAN_KIND.PRODUCER },
    subject.parentContext ?? api!.ROOT_CONTEXT,
  );
  if (!span.isRecording()) return span;
  span.setAttribute(ATTRIBUTES.name, subject.name);
  span.setAttribute(ATTRIBUTES.requestId, requestId);
  return span;
}

/** Ends a span; an error makes its status `ERROR` and is recorded as an exception event. */
export function endSpan(span: TraceSpan, outcome: TaskOutcome, error: Error | undefined): void {
  if (!span.isRecording()) {
    span.end();
    return;
  }
  span.setAttribute(ATTRIBUTES.outcome, outcome);
  if (error !== undefined) {
    // Plain strings, read safely and cut to size: the SDK would read a hostile error's getters itself.
    const { name, message, stack } = errorFields(error);
    span.recordException({ name, message, stack });
    span.setStatus({ code: SPAN_STATUS_ERROR, message });
  }
  span.end();
}

/** Calls `fn` with `span` active, so that spans and log lines made inside the task are its children. */
export function runInSpan<Args extends unknown[], Result>(
  span: TraceSpan,
  parent: TraceContext | undefined,
  fn: (...args: Args) => Result,
  thisArg: unknown,
  ...args: Args
): Result {
  const { context, trace, ROOT_CONTEXT } = api!;
  const active = trace.setSpan(parent ?? ROOT_CONTEXT, span as Span); // the API's tracer made it
  return context.with(active, fn, thisArg, ...args);
}

/**
 * Calls `fn` with `span` active, or else the context the task was added in: a log line written
 * then carries the ids of the task's span, or of its parent when it never started.
 */
export function inSpan(
  span: TraceSpan | undefined,
  parent: TraceContext | undefined,
  fn: () => void,
): void {
  if (span !== undefined) runInSpan(span, parent, fn, undefined);
  else if (parent !== undefined)
    api!.context.with(parent, fn); // a task that had not started yet
  else fn();
}

/** The W3C trace context of `span`, for the job to carry (sampled or not); undefined without one. */
export function traceCarrier(span: TraceSpan | undefined): TraceCarrier | undefined {
  if (span === undefined) return undefined;
  const spanContext = (span as Span).spanContext(); // the API's tracer made it
  if (!api!.isSpanContextValid(spanContext)) return undefined;
  const { traceId, spanId, traceFlags, traceState } = spanContext;
  const flags = (traceFlags & 0xff).toString(16).padStart(2, '0');
  const carrier: TraceCarrier = { traceparent: `00-${traceId}-${spanId}-${flags}` };
  const tracestate = traceState?.serialize();
  if (tracestate) carrier.tracestate = tracestate;
  return carrier;
}

/** The remote parent that a job's trace context names, or undefined when it holds none valid. */
export function contextFromCarrier(carrier: unknown): TraceContext | undefined {
  if (api === undefined || carrier === null || typeof carrier !== 'object') return undefined;
  const { traceparent, tracestate } = carrier as Partial<Record<keyof TraceCarrier, unknown>>;
  if (typeof traceparent !== 'string') return undefined;
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(traceparent);
  const { isValidSpanId, isValidTraceId, trace, ROOT_CONTEXT, createTraceState } = api;
  if (match === null || !isValidTraceId(match[1]) || !isValidSpanId(match[2])) return undefined;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: match[1],
    spanId: match[2],
    traceFlags: parseInt(match[3], 16),
    isRemote: true,
    ...(typeof tracestate === 'string' &&
      tracestate !== '' && { traceState: createTraceState(tracestate) }),
  });
}

/** One point of `background_task.attempt.duration`. */
export function recordAttempt(
  instruments: Instruments,
  name: string,
  outcome: AttemptOutcome,
  seconds: number,
  durable: boolean,
): void {
  instruments.attemptDuration.record(seconds, metricAttributes(name, outcome, durable));
}

/** One count of `background_task.ended`. */
export function recordTaskEnd(
  instruments: Instruments,
  name: string,
  outcome: TaskOutcome,
  durable: boolean,
): void {
  instruments.ended.add(1, metricAttributes(name, outcome, durable));
}

/**
 * Counts the `pending` and `running` tasks of `counts` (one middleware's) in the process-wide
 * gauges for as long as it is alive. Held weakly: a middleware that is gone drops out.
 */
export function countInGauges(counts: TaskCounts): void {
  liveCounts.add(new WeakRef(counts));
  meters(); // so that the gauges exist from now on, not only from the first task
}

/** The library's histogram and counter, as the observer passes them back here. */
export interface Instruments {
  readonly attemptDuration: { record(value: number, attributes: MetricAttributes): void };
  readonly ended: { add(value: number, attributes: MetricAttributes): void };
}

/** The attributes of a metric point: a task name, an outcome, and `durable` on a worker. */
type MetricAttributes = Record<string, string | boolean>;

const liveCounts = new Set<WeakRef<TaskCounts>>();
let instrumentsProvider: MeterProvider | undefined;
let currentInstruments: Instruments | undefined;

/**
 * The instruments of the meter provider registered now, or undefined for the no-op provider:
 * then an attempt's end is not even timed. Taken once per event and passed to the functions
 * that record. The metrics API has no proxy, unlike the trace API: instruments made before the
 * application registers its provider would stay no-ops, so they are made again whenever the
 * global provider changes.
 */
export function meters(): Instruments | undefined {
  if (api === undefined) return undefined;
  const provider = api.metrics.getMeterProvider();
  if (provider !== instrumentsProvider) {
    instrumentsProvider = provider;
    currentInstruments = makeInstruments(provider);
  }
  return currentInstruments;
}

function makeInstruments(provider: MeterProvider): Instruments | undefined {
  const meter = provider.getMeter(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);
  if (meter === api!.createNoopMeter()) return undefined;
  const gauge = (name: string, description: string, field: 'pending' | 'running') =>
    meter
      .createObservableGauge(name, { description })
      .addCallback((result) => result.observe(sumOf(field)));
  gauge(
    'background_task.pending',
    'Tasks added and not yet started: waiting for the response to end, a slot, or a retry.',
    'pending',
  );
  gauge('background_task.running', 'Tasks running now.', 'running');
  return {
    attemptDuration: meter.createHistogram('background_task.attempt.duration', {
      unit: 's',
      description: 'How long each attempt of a background task took, by task and outcome.',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    }),
    ended: meter.createCounter('background_task.ended', {
      description: 'Background tasks that ended for good, by task and outcome.',
    }),
  };
}

/**
 * Low-cardinality attributes only: a task name and an outcome, never a request id or a URL; and
 * `durable: true` on a worker. Left out in the web process rather than `false`: the SDK hashes
 * every attribute of every point, and a third one costs about 0.3 µs a point.
 */
function metricAttributes(name: string, outcome: TaskOutcome, durable: boolean): MetricAttributes {
  return durable
    ? { [ATTRIBUTES.name]: name, [ATTRIBUTES.outcome]: outcome, [ATTRIBUTES.durable]: true }
    : { [ATTRIBUTES.name]: name, [ATTRIBUTES.outcome]: outcome };
}

function sumOf(field: 'pending' | 'running'): number {
  let sum = 0;
  for (const ref of liveCounts) {
    const counts = ref.deref();
    if (counts === undefined) liveCounts.delete(ref);
    else sum += counts[field];
  }
  return sum;
}
