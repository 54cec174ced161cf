/**
 * One queued task: what `add()` was given, in the single shape the runner calls (to-task.ts
 * makes it), with its name and policy settled at the call site.
 */
import type { TraceContext, TraceSpan } from './otel-api';
import type { Attempting, JobLease } from './attempting';
import type { DefinedTask } from './define-task';
import type { ResolvedPolicy } from './options';
import type { TaskContext, TaskObject } from './types';

export class Task implements Attempting {
  /** Attempts made so far: the number of the one running, while one runs. */
  attempt = 0;
  startedAt = 0;
  span: TraceSpan | undefined = undefined;
  /** The context active at `add()`, set by the runner when it takes the task. */
  parentContext: TraceContext | undefined = undefined;
  /** The job's lease, for a task added with `addInTransaction()` once its insert is done. */
  lease: JobLease | undefined = undefined;

  constructor(
    readonly name: string,
    readonly policy: ResolvedPolicy,
    /** The function to call: with `args` (the plain-function form), or as `object.run(ctx)`. */
    readonly fn: (...args: unknown[]) => unknown,
    readonly args: unknown[],
    /** The object form: `fn` (its `run`, read once at `add()`) is called as its method. */
    readonly object: TaskObject | undefined,
    /** Set for a `defineTask` task, so that a durable queue can take it instead. */
    readonly definition: DefinedTask<unknown> | undefined,
  ) {}

  /** The job id of a task added with `addInTransaction()`, for its log lines. */
  get jobId(): string | undefined {
    return this.lease?.jobId;
  }

  invoke(ctx: TaskContext | undefined): unknown {
    return this.object === undefined ? this.fn(...this.args) : this.fn.call(this.object, ctx);
  }
}
