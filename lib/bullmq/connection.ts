/**
 * What the BullMQ producer and worker share: the `connection`, `queueName` and `prefix` options
 * with their checks, and the log of a Redis connection's errors: outages once each, other errors
 * at most once a minute each.
 */
import { performance } from 'node:perf_hooks';
import type { RedisOptions } from 'ioredis';
import type { Logger } from 'winston';
import { LOG_MESSAGES, safeLog } from '../logging';
import { fail } from '../options';
import { RepeatCounter } from '../repeat-counter';
import { errorFields, readProperty, toError } from '../thrown';

/**
 * Where Redis is: `url` (`redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS), any
 * ioredis option (`host`, `port`, `password`, `tls`, `connectTimeout`, `retryStrategy`…), or both;
 * a setting given both ways takes the URL's value (ioredis's rule). Not an ioredis instance: the
 * producer and the worker each set up their connections in their own way.
 */
export interface RedisConnectionOptions extends RedisOptions {
  url?: string;
}

/** The options both `bullmqDurable()` and `startWorker()` take, and must agree on. */
export interface QueueLocation {
  /** Where Redis is. Required. */
  connection: RedisConnectionOptions;
  /** The BullMQ queue the web processes add to and the workers take from. Default: `'background-tasks'`. */
  queueName?: string;
  /** BullMQ's prefix of every Redis key of the queue. Default: `'bull'` (BullMQ's own default). */
  prefix?: string;
}

export const DEFAULT_QUEUE_NAME = 'background-tasks';
const DEFAULT_PREFIX = 'bull';

/** Checks the shared options and fills in their defaults. */
export function resolveLocation(
  where: string,
  given: Partial<QueueLocation>,
): Required<QueueLocation> {
  const { connection, queueName = DEFAULT_QUEUE_NAME, prefix = DEFAULT_PREFIX } = given;
  if (connection === null || typeof connection !== 'object' || Array.isArray(connection)) {
    fail(where, 'connection', 'an object such as { url: "redis://127.0.0.1:6379" }', connection);
  }
  if (typeof (connection as { connect?: unknown }).connect === 'function') {
    fail(where, 'connection', 'connection options, not a Redis client', connection);
  }
  if ((connection as RedisOptions).keyPrefix !== undefined) {
    throw new TypeError(
      `${where}(): option "connection.keyPrefix" does not work with BullMQ; use the "prefix" option`,
    );
  }
  const { url } = connection;
  // The URL is not shown in the message: it may hold a password.
  if (url !== undefined && (typeof url !== 'string' || !/^rediss?:\/\/./.test(url))) {
    throw new TypeError(`${where}(): option "connection.url" must be a redis:// or rediss:// URL`);
  }
  // BullMQ refuses a ':' too, but with a plain Error and only when its Queue is made: at the first enqueue.
  if (typeof queueName !== 'string' || queueName === '' || queueName.includes(':')) {
    fail(where, 'queueName', 'a non-empty string without ":"', queueName);
  }
  if (typeof prefix !== 'string' || prefix === '')
    fail(where, 'prefix', 'a non-empty string', prefix);
  return { connection, queueName, prefix };
}

/**
 * Logs a connection's errors without flooding the log. A connection error is logged once per
 * outage rather than once per reconnection attempt, and the return of the connection is logged.
 * Any other error is logged at most once a minute per distinct error (by `code`, else by
 * message): a worker whose commands Redis refuses (out of memory, a wrong password) keeps
 * retrying (every 5 s at most once paced: paced-worker.ts; on each of ioredis's reconnections),
 * and each retry is an 'error' event. The next line of that error carries in `repeats` how many
 * were not logged meanwhile, and `close()` logs what is left.
 */
export class ConnectionLog {
  private down = false;
  private readonly repeated: RepeatCounter;

  /**
   * @param logger Where the lines go.
   * @param fields The fields every line carries (`queue`, `side`).
   * @param now The clock of the once-a-minute rule, in milliseconds. Default: `performance.now()`
   *   (monotonic, so a wall clock set back cannot silence an error).
   */
  constructor(
    private readonly logger: Logger,
    private readonly fields: object,
    now: () => number = () => performance.now(),
  ) {
    this.repeated = new RepeatCounter((error, repeats) => this.write(error, repeats), now);
  }

  /** Routes an 'error' event: a connection error is logged once per outage, anything else at most once a minute. */
  error(thrown: unknown): void {
    const error = toError(thrown);
    if (!isConnectionError(error)) {
      this.repeated.offer(kindOf(error), error);
      return;
    }
    if (this.down) return;
    this.down = true;
    safeLog(this.logger, 'error', LOG_MESSAGES.redisError, {
      ...this.fields,
      error: errorFields(error, false),
    });
  }

  /** A connection became ready: after an outage that was logged, says it is over. */
  ready(): void {
    if (!this.down) return;
    this.down = false;
    safeLog(this.logger, 'info', LOG_MESSAGES.redisReady, this.fields);
  }

  /** The worker or producer closed: each error with repeats not yet logged gets a last line with their count. */
  close(): void {
    this.repeated.flush();
  }

  private write(error: Error, repeats: number): void {
    // Out of memory gets a message of its own; its stack is only ioredis's parser.
    const outOfMemory = isOutOfMemory(error);
    safeLog(
      this.logger,
      'error',
      outOfMemory ? LOG_MESSAGES.redisOutOfMemory : LOG_MESSAGES.workerError,
      { ...this.fields, error: errorFields(error, !outOfMemory), ...(repeats > 0 && { repeats }) },
    );
  }
}

/** Longer messages are told apart by their start only, so that memory stays bounded. */
const MAX_KEY_LENGTH = 500;

/** Which errors count as repeats of one another: OOM replies differ by the script that failed. */
function kindOf(error: Error): string {
  if (isOutOfMemory(error)) return 'code:OOM';
  const code = readProperty(error, 'code');
  if (typeof code === 'string') return `code:${code}`;
  return `message:${errorFields(error, false).message.slice(0, MAX_KEY_LENGTH)}`;
}

/** Redis's refusal of a write at `maxmemory` under `noeviction`. */
function isOutOfMemory(error: Error): boolean {
  const message = readProperty(error, 'message');
  return typeof message === 'string' && message.startsWith('OOM ');
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

/** Errors that say Redis cannot be reached, as opposed to errors of a command or of BullMQ. */
function isConnectionError(error: Error): boolean {
  const code = readProperty(error, 'code');
  if (typeof code === 'string' && CONNECTION_CODES.has(code)) return true;
  const message = readProperty(error, 'message');
  return (
    typeof message === 'string' &&
    /Connection is closed|ECONNREFUSED|ETIMEDOUT|Stream isn't writeable/.test(message)
  );
}
