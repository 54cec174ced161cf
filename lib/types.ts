/**
 * The public shapes shared by the task queue, the runner and the error handler.
 * Options are declared (and documented) in options.ts; this file holds the values
 * that flow through the library at run time.
 */

/** What a task knows about the request that queued it. Fixed when the response ends. */
export interface TaskRequest {
  /** `res.locals.requestId`: the incoming `X-Request-Id` when safe, else a UUID. */
  readonly id: string;
  readonly method: string;
  /** `req.originalUrl`. */
  readonly url: string;
  /** The status code of the response that was sent (or begun, on an abort). */
  readonly statusCode: number;
  /** True when the client went away before the response was finished. */
  readonly aborted: boolean;
}

/** What an object-form task's `run(ctx)` receives, fresh for each attempt. */
export interface TaskContext {
  /**
   * Aborted when the task times out or is abandoned by `drain()`. Pass it on to `fetch`,
   * database drivers and timers so that the work really stops.
   */
  readonly signal: AbortSignal;
  /** 1 for the first attempt, 2 for the first retry, and so on. */
  readonly attempt: number;
  readonly request: TaskRequest;
}

/** How one task is run: each field overrides the middleware's option of the same name. */
export interface TaskPolicy {
  /** Milliseconds before the task's signal is aborted and the queue moves on. `0` means no limit. */
  timeoutMs?: number;
  /** Attempts after the first one, made when the task throws, rejects or times out. */
  retries?: number;
  /** Base of the exponential backoff between attempts, in milliseconds. */
  retryDelayMs?: number;
}

/** The object form of a task: `add({ name, run })`. */
export interface TaskObject extends TaskPolicy {
  /** Shown in logs as `task`. Defaults to `run`'s function name, else `anonymous`. */
  name?: string;
  run(ctx: TaskContext): unknown;
}

/** What `onTaskError` receives, once per task that ended failed or timed out (after logging). */
export interface TaskFailure {
  readonly task: string;
  readonly attempt: number;
  readonly durationMs: number;
  readonly timedOut: boolean;
  readonly error: Error;
  readonly request: TaskRequest;
  /** The job id, when the task ran on a worker started by `startWorker()`, or was added with `addInTransaction()`. */
  readonly jobId?: string;
}

/**
 * The task counters of one `backgroundTasks()` middleware. Every task ever added is in exactly
 * one of these at any moment (tasks withdrawn by `clear()` count as never added).
 */
export interface TaskCounts {
  /** Added and not yet started: waiting for the response to end, for a slot, or for a retry. */
  pending: number;
  /** Being run now. */
  running: number;
  succeeded: number;
  /** Ended by a throw or a rejection (after any retries), and logged. */
  failed: number;
  /** Ended by the timeout on their last attempt, and logged. */
  timedOut: number;
  /** Refused and logged: the queue held `maxPending` tasks, or the client aborted and `runOnAbort` is false. */
  rejected: number;
  /** Still pending or running when `drain()` ran out of time, and logged. */
  abandoned: number;
  /** Handed to a durable queue (BullMQ, pg-boss) instead of being run in this process. */
  enqueued: number;
  /**
   * Added with `addInTransaction()` and not finished here: its job is left in the database for the
   * workers. The claim after the response found no job (its transaction rolled back, or had not
   * committed yet), or `drain()` gave it up, or its lease ran out before it could start.
   */
  leftToWorkers: number;
}

/** What `stats()` answers: the task counters, and the log records that could not be delivered. */
export interface BackgroundTasksStats extends TaskCounts {
  /**
   * Log records of this middleware's logger that reached no destination: the logger could not
   * take them, and stderr could not either (its buffer was full, or it was closed). Each is also
   * reported in one `log records dropped` line, as soon as a destination takes records again.
   * Not a task state: it is not part of the sum above.
   */
  logRecordsDropped: number;
}

/** What `drain()` resolves with. */
export interface DrainResult {
  /** True when every task ended before the timeout. */
  completed: boolean;
  /** How many tasks were given up on, each logged by name (transactional ones included, left to the workers). */
  abandoned: number;
}
