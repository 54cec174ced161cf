/**
 * What the observer follows: a task through its attempts (the runner's `Task`, or a worker's
 * job), and the request it came from. Plain shapes, below everything that acts on them.
 */
import type { Context, Span } from '@opentelemetry/api';
import type { TaskRequest } from './types';

/** A task as the observer follows it through its attempts (the runner's `Task`, or a worker's job). */
export interface Attempting {
  readonly name: string;
  /** The number of the attempt now starting or running: 1, 2, … */
  attempt: number;
  /** `performance.now()` when the attempt started. */
  startedAt: number;
  /** The attempt's span, while it runs and is recorded. */
  span: Span | undefined;
  /** The context active when the task was added. */
  readonly parentContext: Context | undefined;
  /** The BullMQ job id, on a worker. */
  readonly jobId?: string;
}

/** Where a task came from: its request's id at once, the rest only when a line needs it. */
export interface RequestSource {
  readonly requestId: string;
  describeRequest(): TaskRequest;
}
