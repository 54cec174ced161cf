/**
 * Runs each BullMQ job as one attempt of its defined task, with the attempt semantics of the
 * in-process runner: a fresh `ctx` per attempt, the timeout that aborts `ctx.signal`, and the
 * same outcomes reported to the same kind of observer (log lines plus `jobId`, a `CONSUMER` span
 * that continues the trace of the request that queued the job, metrics with `durable: true`).
 * BullMQ decides and schedules the retries; this reports them as such.
 */
import { UnrecoverableError, type Job, type Worker } from 'bullmq';
import type { Logger } from 'winston';
import { AttemptContext, TaskAbandonedError, timeoutError } from '../attempt';
import { LOG_MESSAGES, droppedRecords, safeLog } from '../logging';
import type { Attempting, RequestSource } from '../attempting';
import { TaskObserver } from '../observer';
import { contextFromCarrier, runInSpan } from '../telemetry';
import { MAX_NAME_CHARS, clip, readProperty, settle, toError } from '../thrown';
import { isUnreadableData } from './unreadable-job';
import type { BackgroundTasksStats, TaskFailure, TaskRequest } from '../types';
import { ConnectionLog } from './connection';
import type { DefinedTask } from '../define-task';

/** Any defined task, whatever its payload type. */
// A handler's payload parameter makes DefinedTask contravariant: only `never` accepts them all.
export type AnyDefinedTask = DefinedTask<never>;

type AnyJob = Job<unknown, unknown, string>;

/** A defined task as the worker runs it: its handler and the timeout settled at start. */
export interface Runnable {
  readonly definition: AnyDefinedTask;
  readonly timeoutMs: number;
}

/** Runs each job as one attempt of its task, and reports what happens to jobs to its observer. */
export class JobRunner {
  /** This worker's counts: running, and the jobs that ended here, by outcome. */
  stats(): BackgroundTasksStats {
    return { ...this.observer.counts, logRecordsDropped: droppedRecords(this.logger) };
  }

  /** Counts, logs and traces every attempt, as the in-process runner's observer does. */
  private readonly observer: TaskObserver;
  /** The errors this worker's attempts failed with, so that other failures BullMQ reports get logged too. */
  private readonly logged = new WeakSet<Error>();
  private maxStartedAttempts: number | undefined = undefined;

  constructor(
    private readonly logger: Logger,
    private readonly tasks: ReadonlyMap<string, Runnable>,
    onTaskError: ((failure: TaskFailure) => unknown) | undefined,
  ) {
    this.observer = new TaskObserver(logger, onTaskError, true);
  }

  watch(worker: Worker<unknown, unknown, string>, queueName: string): void {
    this.maxStartedAttempts = worker.opts.maxStartedAttempts;
    const connectionLog = new ConnectionLog(this.logger, { queue: queueName, side: 'worker' });
    worker.on('error', (error) => connectionLog.error(error));
    worker.getBackend().on('ready', () => connectionLog.ready());
    // 'closed' rather than startWorker's close(): a worker closed through BullMQ's own close() counts too.
    worker.on('closed', () => connectionLog.close());
    worker.on('stalled', (jobId) =>
      safeLog(this.logger, 'warn', LOG_MESSAGES.jobStalled, { queue: queueName, jobId }),
    );
    // Failures decided by BullMQ without running the task, in whichever worker takes the job next:
    // stalled more than maxStalledCount times, or started more than maxStartedAttempts. That take
    // counted as a start, so the last attempt that ran is the one before.
    worker.on('failed', (job, error) => {
      if (job === undefined || this.logged.has(error)) return;
      const { subject, source } = attemptOf(job, Math.max(startsOf(job) - 1, 1));
      this.observer.failedWithoutAttempt(subject, source, error);
    });
  }

  /**
   * One attempt: resolves when the task succeeded, rejects (after logging) when it failed or timed
   * out. A job this worker cannot read (its data is not what `bullmqDurable` writes, or it names
   * a task this worker does not run) fails at once, unrecoverable: retrying cannot help.
   */
  async run(job: AnyJob, cancelled: AbortSignal | undefined): Promise<void> {
    const { subject, source } = attemptOf(job, startsOf(job));
    this.observer.attemptStarted(subject, source);
    const unreadable = unreadableReason(job.data);
    const task = this.tasks.get(job.name);
    if (unreadable !== undefined || task === undefined) {
      const known = [...this.tasks.keys()].join(', ');
      // Once a worker that knows the task runs, `job.retry()` can run it.
      const reason =
        unreadable ??
        `no task named "${subject.name}" is defined in this worker (it runs: ${known})`;
      const error = new UnrecoverableError(`job ${subject.jobId} cannot be run: ${reason}`);
      throw this.failed(job, subject, source, false, error);
    }
    const ctx = new AttemptContext(subject.attempt, source.describeRequest());
    const timedOut = task.timeoutMs > 0 ? timeoutError(task.timeoutMs) : undefined;
    const payload = readProperty(job.data, 'payload') as never;
    const call = () => task.definition.handler(payload, ctx);
    const { span } = subject;
    try {
      await settleFirst(
        span === undefined ? call : () => runInSpan(span, subject.parentContext, call, undefined),
        ctx,
        task.timeoutMs,
        timedOut,
        cancelled,
      );
    } catch (thrown) {
      throw this.failed(job, subject, source, thrown === timedOut, toError(thrown));
    }
    this.observer.attemptSucceeded(subject);
  }

  /** Reports a failed attempt as BullMQ will treat it (retried: `warn`; the last: `error`) and returns the error to throw. */
  private failed(
    job: AnyJob,
    subject: Attempting,
    source: RequestSource,
    timedOut: boolean,
    error: Error,
  ): Error {
    this.logged.add(error);
    const retryInMs = this.retryDelay(job, error);
    this.observer.attemptFailed(subject, source, error, timedOut, retryInMs);
    return error;
  }

  /**
   * The delay before BullMQ retries this attempt, or undefined when it will not: the rule of
   * BullMQ's `Job.shouldRetryJob`, which counts failed attempts (a stall is none), not starts.
   */
  private retryDelay(job: AnyJob, error: Error): number | undefined {
    const attempt = job.attemptsMade + 1;
    const unrecoverable =
      error instanceof UnrecoverableError || error.name === 'UnrecoverableError';
    const startedTooOften =
      this.maxStartedAttempts !== undefined && this.maxStartedAttempts <= job.attemptsStarted;
    if (attempt >= (job.opts.attempts ?? 1) || unrecoverable || startedTooOften) return undefined;
    const { backoff } = job.opts;
    if (typeof backoff === 'number') return backoff;
    if (backoff === undefined) return 0;
    const delay = backoff.delay ?? 0;
    return backoff.type === 'exponential' ? Math.round(2 ** (attempt - 1) * delay) : delay;
  }
}

/**
 * Runs the handler and settles with the first of: its result, the timeout, or BullMQ cancelling
 * the job. On a timeout or a cancel `ctx.signal` is aborted and the handler's promise is left
 * behind, as in the in-process runner: the job's slot is freed whether or not the task stops.
 */
function settleFirst(
  call: () => unknown,
  ctx: AttemptContext,
  timeoutMs: number,
  timedOut: Error | undefined,
  cancelled: AbortSignal | undefined,
): Promise<unknown> {
  let result: Promise<unknown>;
  try {
    // A task may return any thenable: settle() adopts it without trusting its `then`.
    result = settle(call());
  } catch (thrown) {
    result = Promise.reject(thrown);
  }
  if (timedOut === undefined && cancelled === undefined) return result;
  let timer: NodeJS.Timeout | undefined;
  let onCancel: (() => void) | undefined;
  const cut = new Promise<never>((_resolve, reject) => {
    const stop = (reason: Error) => {
      ctx.abort(reason);
      reject(reason);
    };
    if (timedOut !== undefined) timer = setTimeout(stop, timeoutMs, timedOut);
    if (cancelled !== undefined) {
      onCancel = () =>
        stop(
          cancelled.reason instanceof Error
            ? cancelled.reason
            : new TaskAbandonedError(`job cancelled: ${String(cancelled.reason)}`),
        );
      if (cancelled.aborted) onCancel();
      else cancelled.addEventListener('abort', onCancel, { once: true });
    }
  });
  return Promise.race([result, cut]).finally(() => {
    clearTimeout(timer);
    if (onCancel !== undefined) cancelled!.removeEventListener('abort', onCancel);
  });
}

/**
 * How many times the job has been started, this start included: BullMQ counts starts
 * (`attemptsStarted`), so a run cut short by a killed worker counts, where `attemptsMade` counts
 * only failed attempts. Never fewer than those plus one: `job.retry()` may reset the starts alone.
 */
function startsOf(job: AnyJob): number {
  return Math.max(job.attemptsStarted, job.attemptsMade + 1);
}

/** A job as the observer follows it: its attempt, under the trace context the job carries, and its request. */
function attemptOf(job: AnyJob, attempt: number): { subject: Attempting; source: RequestSource } {
  const request = requestOf(job);
  const subject: Attempting = {
    // Job names reach log lines, span names and metric attributes: a foreign producer's are clipped.
    name: typeof job.name === 'string' ? clip(job.name, MAX_NAME_CHARS) : '(no name)',
    attempt,
    startedAt: 0,
    span: undefined,
    parentContext: contextFromCarrier(readProperty(job.data, 'trace')),
    jobId: String(job.id),
  };
  return { subject, source: { requestId: request.id, describeRequest: () => request } };
}

/**
 * The request that queued the job, from its data, its strings clipped for the log lines; a job
 * whose data has none (which fails as unreadable) gets a stand-in for its line.
 */
function requestOf(job: AnyJob): TaskRequest {
  const given = readProperty(job.data, 'request');
  const field = <T>(key: keyof TaskRequest, type: string, fallback: T): T => {
    const value = readProperty(given, key);
    return typeof value === type ? (value as T) : fallback;
  };
  return {
    id: clip(field('id', 'string', `job-${job.id}`), MAX_NAME_CHARS),
    method: clip(field('method', 'string', ''), MAX_NAME_CHARS),
    url: clip(field('url', 'string', '')),
    statusCode: field('statusCode', 'number', 0),
    aborted: field('aborted', 'boolean', false),
  };
}

/** The fields of `request` in what `bullmqDurable` writes, and their types. */
const REQUEST_FIELDS: ReadonlyArray<[keyof TaskRequest, string]> = [
  ['id', 'string'],
  ['method', 'string'],
  ['url', 'string'],
  ['statusCode', 'number'],
  ['aborted', 'boolean'],
];

/**
 * Why a job's data is not what `bullmqDurable` writes (`{ payload, request, trace? }`), or
 * undefined when it is. `payload` may be missing: JSON leaves out an `undefined` payload.
 */
function unreadableReason(data: unknown): string | undefined {
  if (isUnreadableData(data)) return data.reason;
  if (data === null || typeof data !== 'object' || Array.isArray(data))
    return `its data is not an object (got ${data === null ? 'null' : Array.isArray(data) ? 'an array' : typeof data})`;
  const request = readProperty(data, 'request');
  if (request === null || typeof request !== 'object') return 'its data has no request';
  for (const [key, type] of REQUEST_FIELDS) {
    if (typeof readProperty(request, key) !== type)
      return `its data's request.${key} is not a ${type}`;
  }
  return undefined;
}
