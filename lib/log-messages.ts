/**
 * The constant message of every line the library writes, so that users can filter on them and
 * tests can find them. Constants because winston drops a record's metadata when its message holds
 * a `%s`-like token; counts and names go in fields.
 */

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export const LOG_MESSAGES = {
  taskFailed: 'background task failed',
  taskRetrying: 'background task attempt failed, retrying',
  taskRejected: 'background task rejected',
  tasksRejected: 'background tasks rejected: queue full',
  taskAbandoned: 'background task abandoned',
  hookFailed: 'background task error hook failed',
  enqueueFailed: 'durable enqueue failed, running the task in-process',
  enqueueFailedAbandoned: 'durable enqueue failed after drain() gave the task up; it does not run',
  leftToWorkers: 'background task left to the workers',
  jobNotSettled: 'transactional job not settled in the database; a worker may run it again',
  leaseOutrun: 'transactional task outran its lease; a worker may run it again',
  redisError: 'redis connection failed',
  redisReady: 'redis connection restored',
  workerError: 'durable worker error',
  jobStalled: 'durable job stalled',
  redisOutOfMemory:
    'redis out of memory: maxmemory reached, so jobs can be neither stored nor taken',
  requestFailed: 'request failed',
  overrideFailed: 'error override failed',
  headerSkipped: 'error header skipped',
  loggerFailed: 'log transport failed; the records it cannot take go to stderr',
  loggerFormatFailed: 'log format threw; the records it cannot format go to stderr, minimal',
  loggerStalled: 'logger took no record for a second; its records go to stderr until it does',
  loggerCloseTimedOut: 'logger did not finish in time; the records it still held went to stderr',
  logRecordsDropped: 'log records dropped',
} as const;
