/**
 * Runs each BullMQ job as one attempt of its defined task, with the attempt semantics of the
 * in-process runner: a fresh `ctx` per attempt, the timeout that aborts `ctx.signal`, and the
 * same outcomes reported to the same kind of observer (log lines plus `jobId`, a `CONSUMER` span
 * that continues the trace of the request that queued the job, metrics with `durable: true`).
 * BullMQ decides and schedules the retries; this reports them as such.
 */
import { UnrecoverableError, type Job, type Worker } from 'bullmq';
import type { Logger } from 'winston';
import {
  cannotRunMessage,
  jobAttempt,
  runHandler,
  unknownTaskMessage,
  unreadableReason,
  type AnyDefinedTask,
  type Runnable,
} from '../job-attempt';
import { LOG_MESSAGES, droppedRecords, safeLog } from '../logging';
import type { Attempting, RequestSource } from '../attempting';
import { TaskObserver } from '../observer';
import type { BackgroundTasksStats, TaskFailure } from '../types';
import { ConnectionLog } from './connection';
import { isUnreadableData } from './unreadable-job';

export type { AnyDefinedTask, Runnable };

type AnyJob = Job<unknown, unknown, string>;

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
    const data: unknown = job.data;
    const unreadable = isUnreadableData(data) ? data.reason : unreadableReason(data);
    const task = this.tasks.get(job.name);
    if (unreadable !== undefined || task === undefined) {
      // Once a worker that knows the task runs, `job.retry()` can run it.
      const reason = unreadable ?? unknownTaskMessage(subject.name, this.tasks);
      const error = new UnrecoverableError(cannotRunMessage(subject.jobId, reason));
      throw this.failed(job, subject, source, false, error);
    }
    const failure = await runHandler(task, subject, source, cancelled, job.data);
    if (failure !== undefined)
      throw this.failed(job, subject, source, failure.timedOut, failure.error);
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
 * How many times the job has been started, this start included: BullMQ counts starts
 * (`attemptsStarted`), so a run cut short by a killed worker counts, where `attemptsMade` counts
 * only failed attempts. Never fewer than those plus one: `job.retry()` may reset the starts alone.
 */
function startsOf(job: AnyJob): number {
  return Math.max(job.attemptsStarted, job.attemptsMade + 1);
}

/** A job as the observer follows it, at `attempt`. */
function attemptOf(job: AnyJob, attempt: number): { subject: Attempting; source: RequestSource } {
  return jobAttempt({ task: job.name, jobId: String(job.id), attempt, data: job.data });
}
