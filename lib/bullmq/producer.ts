/**
 * `bullmqDurable()`: the durable queue that a web process hands its defined tasks to. Each task
 * becomes one BullMQ job; when Redis is down the enqueue fails fast, so that the runner logs it
 * and runs the task in-process, and no request waits on Redis.
 */
import { randomUUID } from 'node:crypto';
import { Queue, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from 'winston';
import type { DurableJob, DurableQueue } from '../durable';
import { useLogger } from '../logging';
import { MAX_TIMER_MS, checkInteger, checkOptionsObject, fail } from '../options';
import { ConnectionLog, resolveLocation, type QueueLocation } from './connection';

/** What to keep of finished jobs: BullMQ's `removeOnComplete` / `removeOnFail` values. */
export type KeepJobsOption = JobsOptions['removeOnComplete'];

export interface BullmqDurableOptions extends QueueLocation {
  /** Where Redis errors are logged (an outage once, any other error at most once a minute). Default: JSON lines on the console. */
  logger?: Logger;
  /**
   * How long one enqueue may take, the first connection to Redis included, before it is given up
   * and the task runs in-process. Default: `5000`.
   */
  enqueueTimeoutMs?: number;
  /** BullMQ's `removeOnComplete` of each job. Default: `{ age: 86400, count: 1000 }` (a day, at most 1000 jobs). */
  removeOnComplete?: KeepJobsOption;
  /** BullMQ's `removeOnFail` of each job. Default: `false`: failed jobs stay in the failed set, to inspect and retry. */
  removeOnFail?: KeepJobsOption;
}

/** A durable queue on BullMQ. `enqueue` resolves with the job's id. */
export interface BullmqDurable extends DurableQueue {
  enqueue(job: DurableJob): Promise<string>;
  /** Closes the Redis connection; enqueues after it reject, so their tasks run in-process. */
  close(): Promise<void>;
}

/** What a BullMQ job made by `bullmqDurable()` holds, and what `startWorker()` reads back. */
export interface DurableJobData {
  payload: unknown;
  request: DurableJob['request'];
  /** The W3C trace context of the hand-off, when it was traced: the worker's span continues it. */
  trace?: DurableJob['trace'];
}

/**
 * Creates the durable queue for `backgroundTasks({ durable })`. Options are checked here; the
 * Redis connection is opened by the first enqueue, so creating it never blocks nor fails on Redis.
 */
export function bullmqDurable(options: BullmqDurableOptions): BullmqDurable {
  const where = 'bullmqDurable';
  const given = checkOptionsObject(where, options, [
    'connection',
    'queueName',
    'prefix',
    'logger',
    'enqueueTimeoutMs',
    'removeOnComplete',
    'removeOnFail',
  ]);
  const location = resolveLocation(where, given);
  const logger = useLogger(where, given.logger);
  return new BullmqProducer(
    location,
    logger,
    checkInteger(where, 'enqueueTimeoutMs', given.enqueueTimeoutMs, 5_000, 1, MAX_TIMER_MS),
    checkKeepJobs(where, 'removeOnComplete', given.removeOnComplete, { age: 86_400, count: 1_000 }),
    checkKeepJobs(where, 'removeOnFail', given.removeOnFail, false),
  );
}

/** Statuses of an ioredis client still making its first connection. */
const FIRST_CONNECTION = new Set(['wait', 'connecting', 'connect']);

class BullmqProducer implements BullmqDurable {
  private opened: { client: Redis; queue: Queue } | undefined = undefined;
  private everReady = false;
  /** The wait for the first connection, while it lasts. */
  private connecting: Promise<void> | undefined = undefined;
  private closing: Promise<void> | undefined = undefined;
  private readonly connectionLog: ConnectionLog;

  constructor(
    private readonly location: Required<QueueLocation>,
    logger: Logger,
    private readonly timeoutMs: number,
    private readonly removeOnComplete: KeepJobsOption,
    private readonly removeOnFail: KeepJobsOption,
  ) {
    this.connectionLog = new ConnectionLog(logger, { queue: location.queueName, side: 'producer' });
  }

  async enqueue(job: DurableJob): Promise<string> {
    if (this.closing !== undefined) throw new Error('bullmqDurable(): closed');
    const { client, queue } = this.open();
    const data: DurableJobData = {
      payload: job.payload,
      request: job.request,
      ...(job.trace !== undefined && { trace: job.trace }),
    };
    let givenUp = false;
    const add = async () => {
      await this.whenReady(client);
      // Too late: the task is running in-process by now, and must not run on a worker as well.
      if (givenUp) throw new Error('enqueue given up');
      // A fresh id makes the add idempotent: if ioredis resends it after a reconnect, Redis keeps one job.
      const added = await queue.add(job.name, data, {
        jobId: randomUUID(),
        attempts: job.retries + 1,
        backoff: { type: 'exponential', delay: job.retryDelayMs },
        removeOnComplete: this.removeOnComplete,
        removeOnFail: this.removeOnFail,
      });
      return added.id!;
    };
    return within(add(), this.timeoutMs, 'enqueue', () => (givenUp = true));
  }

  close(): Promise<void> {
    this.closing ??= this.shut();
    return this.closing;
  }

  private async shut(): Promise<void> {
    // Errors are not logged from here on (see open()), so the repeats still untold are logged now.
    this.connectionLog.close();
    const opened = this.opened;
    if (opened === undefined) return;
    await opened.queue.close().catch(() => undefined);
    if (opened.client.status === 'ready') {
      await within(opened.client.quit(), this.timeoutMs, 'quit').catch(() => undefined);
    }
    opened.client.disconnect();
  }

  /**
   * The connection, made on first use. Without the offline queue a command fails at once while
   * Redis is unreachable instead of waiting for it; one retry per request lets a command that
   * was in flight when the connection dropped fail rather than wait through every reconnection.
   * ioredis keeps a process alive for `disconnectTimeout` when closed while reconnecting: 2 s by
   * default, shortened here so that a web process shutting down during an outage exits promptly.
   */
  private open(): { client: Redis; queue: Queue } {
    if (this.opened !== undefined) return this.opened;
    const { url, ...given } = this.location.connection;
    const options = {
      maxRetriesPerRequest: 1,
      disconnectTimeout: 200,
      ...given,
      enableOfflineQueue: false,
      lazyConnect: false,
    };
    const client = url === undefined ? new Redis(options) : new Redis(url, options);
    const onError = (error: unknown) => {
      if (this.closing === undefined) this.connectionLog.error(error);
    };
    client.on('error', onError);
    client.on('ready', () => {
      this.everReady = true;
      this.connectionLog.ready();
    });
    // The version check is skipped: it is a command at connection time whose failure would
    // leave the Queue broken for good. The workers still check the version.
    const { queueName, prefix } = this.location;
    const queue = new Queue(queueName, { connection: client, prefix, skipVersionCheck: true });
    queue.on('error', onError);
    this.opened = { client, queue };
    return this.opened;
  }

  /**
   * Resolves once the client is ready. Only the first connection is waited for; while Redis is
   * down after having been up, this rejects at once, so that tasks run in-process without delay.
   */
  private whenReady(client: Redis): Promise<void> {
    if (client.status === 'ready') return Promise.resolve();
    if (this.everReady || !FIRST_CONNECTION.has(client.status)) {
      return Promise.reject(
        new Error(`Redis is not connected (connection status: ${client.status})`),
      );
    }
    // One wait shared by every enqueue meanwhile: a burst must not add listeners by the thousand.
    this.connecting ??= new Promise<void>((resolve, reject) => {
      const done = (error?: unknown) => {
        client.off('ready', done).off('error', done).off('close', done);
        this.connecting = undefined;
        if (client.status === 'ready') resolve();
        else
          reject(error instanceof Error ? error : new Error(`Redis connection ${client.status}`));
      };
      client.once('ready', done).once('error', done).once('close', done);
    });
    return this.connecting;
  }
}

/** `promise`, or a rejection after `ms` (when `onTimeout` is called first). */
function within<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  onTimeout?: () => void,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`${what} timed out after ${ms} ms`));
    }, ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** BullMQ's keep-jobs values: a boolean, a count, or `{ age?, count?, limit? }` in seconds and jobs. */
function checkKeepJobs(
  where: string,
  name: string,
  value: unknown,
  fallback: KeepJobsOption,
): KeepJobsOption {
  if (value === undefined) return fallback;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number')
    return checkInteger(where, name, value, 0, 0, Number.MAX_SAFE_INTEGER);
  const expected = 'a boolean, a count, or { age?, count?, limit? } of non-negative integers';
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    fail(where, name, expected, value);
  const keys = Object.keys(value);
  const valid =
    keys.length > 0 &&
    keys.every((key) => {
      const field = (value as Record<string, unknown>)[key];
      return (
        ['age', 'count', 'limit'].includes(key) &&
        Number.isSafeInteger(field) &&
        (field as number) >= 0
      );
    });
  if (!valid) fail(where, name, expected, value);
  return value as KeepJobsOption;
}
