/**
 * What the observer follows: a task through its attempts (the runner's `Task`, or a worker's
 * job), and the request it came from. Plain shapes, below everything that acts on them.
 */
import type { TraceContext, TraceSpan } from './otel-api';
import type { TaskRequest } from './types';

/** A task as the observer follows it through its attempts (the runner's `Task`, or a worker's job). */
export interface Attempting {
  readonly name: string;
  /** The number of the attempt now starting or running: 1, 2, … */
  attempt: number;
  /** `performance.now()` when the attempt started. */
  startedAt: number;
  /** The attempt's span, while it runs and is recorded. */
  span: TraceSpan | undefined;
  /** The context active when the task was added. */
  readonly parentContext: TraceContext | undefined;
  /** The job id: on a worker, or of a task added with `addInTransaction()`. */
  readonly jobId?: string;
  /** The database's hold on the job of a task added with `addInTransaction()`, once inserted. */
  readonly lease?: JobLease;
}

/** How a task added with `addInTransaction()` ended here, as its job is told. */
export type LeaseOutcome = 'succeeded' | 'failed' | 'left_to_workers';

/**
 * The job of a task added with `addInTransaction()`, held in the database for this process for a
 * while (its lease): told how the task ended here, so that the database agrees.
 */
export interface JobLease {
  readonly jobId: string;
  /** True when an attempt of `timeoutMs` starting now could end, and be reported, before the lease does. */
  covers(timeoutMs: number): boolean;
  /** The task ended here for good: its job is marked done, failed to the workers' retries, or given back. */
  ended(outcome: LeaseOutcome, error?: Error): void;
}

/** Where a task came from: its request's id at once, the rest only when a line needs it. */
export interface RequestSource {
  readonly requestId: string;
  describeRequest(): TaskRequest;
}
