/**
 * The seam between the in-process runner and a durable queue (BullMQ, in `express-background-tasks/bullmq`):
 * what a durable queue must offer, and what it is handed for each task.
 */
import type { TraceCarrier } from './telemetry';
import type { TaskRequest } from './types';

/** One task handed to a durable queue, when the response that queued it has ended. */
export interface DurableJob {
  /** The name given to `defineTask`: how a worker finds the handler. */
  readonly name: string;
  /** The payload, already checked to survive JSON. */
  readonly payload: unknown;
  readonly request: TaskRequest;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly retryDelayMs: number;
  /**
   * The W3C trace context of the hand-off's `PRODUCER` span, when an OpenTelemetry SDK records it:
   * a worker's span for the job continues the trace.
   */
  readonly trace?: TraceCarrier;
}

export interface DurableQueue {
  /** Stores the job; rejects when it could not (the task then runs in this process, and that is logged). */
  enqueue(job: DurableJob): Promise<unknown>;
  /** Closes connections. */
  close?(): Promise<void>;
}
