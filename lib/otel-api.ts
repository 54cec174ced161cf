/**
 * The one place `@opentelemetry/api` is loaded, and the shapes of its objects as the rest of the
 * library holds them. The API is an optional peer dependency, as OpenTelemetry asks of libraries
 * (one copy per application): when the application has not installed it, `otelApi` is undefined
 * and telemetry.ts records nothing. Nothing here is typed from the package in what it publishes,
 * so that the library's declarations compile without it.
 */
import type * as OpenTelemetryApi from '@opentelemetry/api';
import type { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { installed } from './peers';

/** What telemetry.ts calls of the API: `metrics` came in 1.3, `createTraceState` in 1.1. */
const USED = [
  'trace',
  'metrics',
  'context',
  'ROOT_CONTEXT',
  'ProxyTracerProvider',
  'isSpanContextValid',
  'isValidSpanId',
  'isValidTraceId',
  'createTraceState',
  'createNoopMeter',
] as const;

/**
 * `@opentelemetry/api`, loaded once with the library; undefined when it is not installed. Only
 * telemetry.ts uses it.
 * @internal
 */
export const otelApi: typeof OpenTelemetryApi | undefined = loadApi();

/**
 * The `SpanKind` values the library uses. The API's `SpanKind` is an enum, an object at run time:
 * its values are written here so that code that names a kind does not need the package. The
 * compiler checks them against the API's.
 */
export const SPAN_KIND = {
  INTERNAL: 0,
  PRODUCER: 3,
  CONSUMER: 4,
} as const satisfies Pick<typeof SpanKind, 'INTERNAL' | 'PRODUCER' | 'CONSUMER'>;

/** One of `SPAN_KIND`'s values. */
export type TaskSpanKind = (typeof SPAN_KIND)[keyof typeof SPAN_KIND];

/** `SpanStatusCode.ERROR`, for the same reason as `SPAN_KIND`. */
export const SPAN_STATUS_ERROR = 2 satisfies SpanStatusCode.ERROR;

/** The API's `Context`, written out: the same three methods, so either type stands for the other. */
export interface TraceContext {
  getValue(key: symbol): unknown;
  setValue(key: symbol, value: unknown): TraceContext;
  deleteValue(key: symbol): TraceContext;
}

/**
 * The part of the API's `Span` that the library calls. Every span it holds was made by the API's
 * tracer (in telemetry.ts), so telemetry.ts may hand one back to the API as a full `Span`.
 */
export interface TraceSpan {
  isRecording(): boolean;
  setAttribute(key: string, value: string | number | boolean): unknown;
  recordException(exception: { name: string; message: string; stack?: string }): void;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
}

function loadApi(): typeof OpenTelemetryApi | undefined {
  if (!installed('@opentelemetry/api')) return undefined;
  // A plain require, not an import: an import of a missing package would throw at load. A
  // broken install still throws here, loudly: it is not the same as none.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const api = require('@opentelemetry/api') as Partial<typeof OpenTelemetryApi>;
  // A version older than the peer range (installed with --legacy-peer-deps, say) may lack what
  // the library calls: then it is as if none were installed, rather than a throw at a task's end.
  return USED.every((name) => api[name] !== undefined)
    ? (api as typeof OpenTelemetryApi)
    : undefined;
}
