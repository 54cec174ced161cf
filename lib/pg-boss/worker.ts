/**
 * `startWorker()`: a pg-boss worker for the jobs of `pgBossDurable()`, in any process on any
 * machine: the jobs handed off after a response, those a web process left (it died, or drain()
 * gave them up), and the retries of a transactional task that failed in-process. Each job is one
 * attempt of its task, reported to the observer as on the BullMQ worker; pg-boss decides the
 * retries, the expiry and the dead-letter queue.
 */
import type { JobWithMetadata, PgBoss, WorkOptions } from 'pg-boss';
import type { Logger } from 'winston';
import {
  cannotRunMessage,
  jobAttempt,
  runHandler,
  tasksByName,
  unknownTaskMessage,
  unreadableReason,
  type AnyDefinedTask,
  type Runnable,
} from '../job-attempt';
import { droppedRecords, useLogger } from '../logging';
import { TaskObserver } from '../observer';
import {
  BACKGROUND_TASKS_DEFAULTS,
  MAX_TIMER_MS,
  checkFunction,
  checkInteger,
  checkOptionsObject,
  fail,
} from '../options';
import { readProperty } from '../thrown';
import type { BackgroundTasksStats, TaskFailure } from '../types';
import { BossConnection, resolveLocation, type PgBossLocation } from './connection';

export type { AnyDefinedTask };

/** Work options that `startWorker()` sets itself and so refuses in `workOptions`. */
const OWNED = [
  'batchSize',
  'includeMetadata',
  'localConcurrency',
  'perJobResults',
  'transactional',
];

export interface StartWorkerOptions extends PgBossLocation {
  /** The tasks this worker runs, each by its `defineTask` name. Required; names must be unique. */
  tasks: readonly AnyDefinedTask[];
  /** Where failures, retries and pg-boss's errors (each at most once a minute) are logged. Default: JSON lines on the console. */
  logger?: Logger;
  /** Jobs this worker runs at once (pg-boss's `localConcurrency`). Default: `8`. */
  concurrency?: number;
  /** The timeout of a task whose definition sets none (`0`: no limit). Default: `30000`, as `backgroundTasks()`. */
  timeoutMs?: number;
  /** Called once per job that ended failed (after its last attempt), after it was logged. A throw here is caught and logged. */
  onTaskError?: (failure: TaskFailure) => unknown;
  /**
   * Passed to pg-boss's `work()`: `pollingIntervalSeconds` (default 2), `notifyPollingIntervalSeconds`,
   * `heartbeatRefreshSeconds`… Not `batchSize`, `includeMetadata`, `localConcurrency`,
   * `perJobResults` or `transactional`, which are set here, nor `ignoreStartAfter: true`, which
   * would take jobs under the lease of a web process that runs them. Default: `{}`.
   */
  workOptions?: Omit<WorkOptions, 'batchSize' | 'includeMetadata' | 'localConcurrency'>;
  /**
   * Passed to `new PgBoss()` when it is made from `connectionString`: `useListenNotify`,
   * `monitorIntervalSeconds`, `max`… Refused with `boss`. Default: `{}`.
   */
  bossOptions?: object;
}

export interface DurableWorker {
  /** The pg-boss instance, for its events and methods. */
  readonly boss: PgBoss;
  /** Stops taking jobs, waits for the running ones to end, and stops the instance if it was made here. */
  close(): Promise<void>;
  /**
   * This worker's counts, as `stats()` of the middleware: `running`, and the jobs that ended on
   * this worker by outcome (`succeeded`, `failed`, `timedOut`). `pending` stays 0 (jobs wait in
   * the database), as do the others.
   */
  stats(): BackgroundTasksStats;
}

/**
 * Starts a worker for the defined tasks. Options are checked here: a bad one throws a TypeError at
 * once. Resolves once pg-boss is started and polling.
 */
export async function startWorker(options: StartWorkerOptions): Promise<DurableWorker> {
  const where = 'startWorker';
  const given = checkOptionsObject(where, options, [
    'connectionString',
    'boss',
    'queueName',
    'deadLetterQueue',
    'tasks',
    'logger',
    'concurrency',
    'timeoutMs',
    'onTaskError',
    'workOptions',
    'bossOptions',
  ]);
  const location = resolveLocation(where, given);
  const logger = useLogger(where, given.logger);
  if (given.onTaskError !== undefined) checkFunction(where, 'onTaskError', given.onTaskError);
  const timeoutMs = checkInteger(
    where,
    'timeoutMs',
    given.timeoutMs,
    BACKGROUND_TASKS_DEFAULTS.timeoutMs,
    0,
    MAX_TIMER_MS,
  );
  const tasks = tasksByName(where, given.tasks, timeoutMs);
  const concurrency = checkInteger(where, 'concurrency', given.concurrency, 8, 1, 10_000);
  const workOptions = checkObject(where, 'workOptions', given.workOptions);
  for (const key of OWNED) {
    if (key in workOptions)
      throw new TypeError(`${where}(): workOptions.${key} is set by startWorker()`);
  }
  if (workOptions.ignoreStartAfter === true) {
    // A transactional task's job waits under a lease (`startAfter`) while a web process runs it.
    throw new TypeError(
      `${where}(): workOptions.ignoreStartAfter would take jobs that a web process is running ` +
        '(a task added with addInTransaction() waits under its lease until then)',
    );
  }
  if (given.boss !== undefined && given.bossOptions !== undefined) {
    throw new TypeError(
      `${where}(): option "bossOptions" is for the instance made from "connectionString"; ` +
        'an instance given as "boss" is configured where it is made',
    );
  }
  const connection = new BossConnection(
    location,
    logger,
    'worker',
    checkObject(where, 'bossOptions', given.bossOptions),
  );
  const observer = new TaskObserver(logger, given.onTaskError, true);
  const boss = await connection.ready();
  const { queueName } = location;
  await boss.work<unknown>(
    queueName,
    { ...workOptions, batchSize: 1, includeMetadata: true, localConcurrency: concurrency },
    // includeMetadata: each job has its retry count and policy.
    ([job]) => runJob(observer, tasks, job as JobWithMetadata<unknown>),
  );
  return {
    boss,
    async close() {
      await boss.offWork(queueName, { wait: true });
      await connection.close();
    },
    stats: () => ({ ...observer.counts, logRecordsDropped: droppedRecords(logger) }),
  };
}

/** One attempt: resolves when the task succeeded, rejects (after logging) when it failed, so that pg-boss retries it. */
async function runJob(
  observer: TaskObserver,
  tasks: ReadonlyMap<string, Runnable>,
  job: JobWithMetadata<unknown>,
): Promise<void> {
  const name = readProperty(job.data, 'task');
  const { subject, source } = jobAttempt({
    task: typeof name === 'string' ? name : '(none)',
    jobId: job.id,
    // pg-boss counts a claim after a start as a retry: starts on workers, as BullMQ's attemptsStarted.
    attempt: job.retryCount + 1,
    data: job.data,
  });
  observer.attemptStarted(subject, source);
  const task = tasks.get(subject.name);
  // A job not written by pgBossDurable() (a foreign producer's, one edited by hand) is never run
  // with what it holds. pg-boss has no unrecoverable failure: its retry limit, then the
  // dead-letter queue, end it.
  const unreadable = unreadableReason(job.data);
  const failure =
    unreadable !== undefined
      ? { error: new Error(cannotRunMessage(subject.jobId, unreadable)), timedOut: false }
      : task === undefined
        ? { error: new Error(unknownTaskMessage(subject.name, tasks)), timedOut: false }
        : await runHandler(task, subject, source, job.signal, job.data);
  if (failure === undefined) {
    observer.attemptSucceeded(subject);
    return;
  }
  observer.attemptFailed(subject, source, failure.error, failure.timedOut, retryDelay(job));
  throw failure.error;
}

/**
 * The least delay before pg-boss retries this attempt, or undefined when it will not: its rule of
 * `failJobs` (retried while `retryCount < retryLimit`; with backoff, between `retryDelay * 2 **
 * retryCount` and twice that, in seconds).
 */
function retryDelay(job: JobWithMetadata<unknown>): number | undefined {
  if (job.retryCount >= job.retryLimit) return undefined;
  if (!job.retryBackoff) return job.retryDelay * 1_000;
  return Math.max(job.retryDelay, 1) * 2 ** Math.min(16, job.retryCount) * 1_000;
}

function checkObject(where: string, name: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    fail(where, name, 'an object', value);
  return value as Record<string, unknown>;
}
