/**
 * What the BullMQ producer and worker share: the `connection`, `queueName` and `prefix` options
 * with their checks, and the log of a Redis connection going down and coming back.
 */
import type { RedisOptions } from 'ioredis';
import type { Logger } from 'winston';
import { LOG_MESSAGES, safeLog } from '../logging';
import { fail } from '../options';
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
 * Logs a connection's errors once per outage rather than once per reconnection attempt (which
 * would be a line every few seconds for as long as Redis is down), and logs its return.
 */
export class ConnectionLog {
  private down = false;

  constructor(
    private readonly logger: Logger,
    private readonly fields: object,
  ) {}

  /** Routes an 'error' event: a connection error is logged once per outage, anything else every time. */
  error(thrown: unknown): void {
    const error = toError(thrown);
    if (!isConnectionError(error)) {
      safeLog(this.logger, 'error', LOG_MESSAGES.workerError, {
        ...this.fields,
        error: errorFields(error),
      });
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
