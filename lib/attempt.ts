/**
 * What one attempt of a task sees and how it is cut short: the `ctx` of object-form tasks, and
 * the reasons its signal is aborted with (shared by the in-process runner and the BullMQ worker).
 */
import type { TaskContext, TaskRequest } from './types';

/** The reason a timed-out task's signal is aborted with. */
export class TaskTimeoutError extends Error {
  override name = 'TaskTimeoutError';
}

/** The error a timed-out attempt fails with, in the runner and in the BullMQ worker alike. */
export function timeoutError(timeoutMs: number): TaskTimeoutError {
  return new TaskTimeoutError(`task timed out after ${timeoutMs} ms`);
}

/** The reason an abandoned task's signal is aborted with. */
export class TaskAbandonedError extends Error {
  override name = 'TaskAbandonedError';
}

/** The `ctx` of an object-form task. The AbortController is made only if the task reads `signal` or must be aborted. */
export class AttemptContext implements TaskContext {
  private controller: AbortController | undefined = undefined;

  constructor(
    readonly attempt: number,
    readonly request: TaskRequest,
  ) {}

  get signal(): AbortSignal {
    return (this.controller ??= new AbortController()).signal;
  }

  abort(reason: Error): void {
    (this.controller ??= new AbortController()).abort(reason);
  }
}
