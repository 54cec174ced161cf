/**
 * `startWorker()`: a BullMQ worker for the jobs that `bullmqDurable()` added, in any process on
 * any machine. This file checks its options and sets BullMQ up; job-runner.ts runs the jobs.
 */
import type { ConnectionOptions, Worker, WorkerOptions } from 'bullmq';
import type { Logger } from 'winston';
import { useLogger } from '../logging';
import {
  BACKGROUND_TASKS_DEFAULTS,
  MAX_TIMER_MS,
  checkFunction,
  checkInteger,
  checkOptionsObject,
  fail,
} from '../options';
import { tasksByName } from '../job-attempt';
import type { BackgroundTasksStats, TaskFailure } from '../types';
import { resolveLocation, type QueueLocation } from './connection';
import { JobRunner, type AnyDefinedTask } from './job-runner';
import { PacedWorker } from './paced-worker';

export type { AnyDefinedTask };

/** `WorkerOptions` that `startWorker()` sets itself and so refuses in `workerOptions`. */
const OWNED = ['connection', 'concurrency', 'prefix', 'autorun'] as const;

export interface StartWorkerOptions extends QueueLocation {
  /** The tasks this worker runs, each by its `defineTask` name. Required; names must be unique. */
  tasks: readonly AnyDefinedTask[];
  /** Where failures, retries, stalled jobs and Redis errors (each at most once a minute) are logged. Default: JSON lines on the console. */
  logger?: Logger;
  /** Jobs this worker runs at once. Default: `8` (tasks mostly wait on I/O; BullMQ's own default is 1). */
  concurrency?: number;
  /** The timeout of a task whose definition sets none (`0`: no limit). Default: `30000`, as `backgroundTasks()`. */
  timeoutMs?: number;
  /** Called once per job that ended failed (after its last attempt), after it was logged. A throw here is caught and logged. */
  onTaskError?: (failure: TaskFailure) => unknown;
  /**
   * Passed to BullMQ's `Worker`: `lockDuration`, `stalledInterval`, `maxStalledCount`, `limiter`, `name`…
   * Not `connection`, `concurrency`, `prefix` or `autorun`, which are set from the options above. Default: `{}`.
   */
  workerOptions?: Omit<WorkerOptions, (typeof OWNED)[number]>;
}

export interface DurableWorker {
  /** The BullMQ worker, for its events and methods. */
  readonly worker: Worker<unknown, unknown, string>;
  /**
   * Stops taking jobs, waits for the running ones to end, and closes the connections; also when
   * Redis was never reached, which BullMQ's own `worker.close()` would wait for forever.
   */
  close(): Promise<void>;
  /**
   * This worker's counts, as `stats()` of the middleware: `running`, and the jobs that ended on
   * this worker by outcome (`succeeded`, `failed`, `timedOut`). `pending` stays 0 (jobs wait in
   * Redis), as do `rejected`, `abandoned` and `enqueued`.
   */
  stats(): BackgroundTasksStats;
}

/** Starts a worker for the defined tasks. Options are checked here: a bad one throws a TypeError at once. */
export function startWorker(options: StartWorkerOptions): DurableWorker {
  const where = 'startWorker';
  const given = checkOptionsObject(where, options, [
    'connection',
    'queueName',
    'prefix',
    'tasks',
    'logger',
    'concurrency',
    'timeoutMs',
    'onTaskError',
    'workerOptions',
  ]);
  const { connection, queueName, prefix } = resolveLocation(where, given);
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
  const runner = new JobRunner(logger, tasks, given.onTaskError);
  const workerOptions = checkWorkerOptions(where, given.workerOptions);
  const concurrency = checkInteger(where, 'concurrency', given.concurrency, 8, 1, 10_000);
  const worker = new PacedWorker(
    queueName,
    // Three parameters: BullMQ passes a signal, aborted when the job is cancelled, only to a processor that declares it.
    (job, _token, signal) => runner.run(job, signal),
    // ioredis types `retryStrategy` a little wider than BullMQ's copy of them; the value is ioredis's.
    {
      ...workerOptions,
      connection: connection as ConnectionOptions,
      prefix,
      concurrency,
      autorun: true,
    },
  );
  runner.watch(worker, queueName);
  // BullMQ's close() waits forever for a connection that never became ready (a wrong password,
  // Redis down since the start). Such a worker has taken no job, so closing it by force loses nothing.
  let ready = false;
  worker
    .getBackend()
    .waitUntilReady()
    .then(() => (ready = true))
    .catch(() => undefined);
  return { worker, close: () => worker.close(!ready), stats: () => runner.stats() };
}

function checkWorkerOptions(where: string, value: unknown): Partial<WorkerOptions> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(where, 'workerOptions', "an object of BullMQ's Worker options", value);
  }
  for (const key of OWNED) {
    if (key in value)
      throw new TypeError(
        `${where}(): workerOptions.${key} is set by startWorker(); use its own option`,
      );
  }
  return value as Partial<WorkerOptions>;
}
