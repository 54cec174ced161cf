/**
 * Every log line the library writes, in one place: constant messages (winston drops metadata
 * when a message holds a `%s`-like token), explicit fields, and a logger that may itself throw.
 */
import { performance } from 'node:perf_hooks';
import winston from 'winston';
import type { Logger } from 'winston';
import { checkLogger } from './options';
import { errorFields, settle, toError } from './thrown';
import type { TaskFailure, TaskRequest } from './types';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** The messages, so that users can filter on them and tests can find them. */
export const LOG_MESSAGES = {
  taskFailed: 'background task failed',
  taskRetrying: 'background task attempt failed, retrying',
  taskRejected: 'background task rejected',
  taskAbandoned: 'background task abandoned',
  hookFailed: 'background task error hook failed',
  enqueueFailed: 'durable enqueue failed, running the task in-process',
  redisError: 'redis connection failed',
  redisReady: 'redis connection restored',
  workerError: 'durable worker error',
  jobStalled: 'durable job stalled',
  redisOutOfMemory:
    'redis out of memory: maxmemory reached, so jobs can be neither stored nor taken',
  requestFailed: 'request failed',
  overrideFailed: 'error override failed',
  headerSkipped: 'error header skipped',
  loggerFailed: 'logger failed; its records go to stderr from now on',
  loggerStalled:
    'logger is not keeping up; its records go to stderr while 1000 wait unacknowledged',
  loggerCloseTimedOut: 'logger did not finish in time; records it still held may be lost',
} as const;

/** The default logger: JSON lines on the console, which escapes newlines so no message can forge a line. */
export function createDefaultLogger(): Logger {
  return winston.createLogger({
    level: 'info',
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Console()],
  });
}

/** The logger to use: the one given (checked to be a winston Logger), else the default; guarded either way. */
export function useLogger(where: string, given: Logger | undefined): Logger {
  if (given !== undefined) checkLogger(where, given);
  const logger = given ?? createDefaultLogger();
  guardLogger(logger);
  return logger;
}

/** The fields that place a task: which one, for which request. */
export interface TaskLogFields {
  task: string;
  requestId: string;
  method: string;
  url: string;
  statusCode?: number;
}

/** Fields for a request as a task sees it. */
export function requestFields(task: string, request: TaskRequest): TaskLogFields {
  return {
    task,
    requestId: request.id,
    method: request.method,
    url: request.url,
    statusCode: request.statusCode,
  };
}

/** The fields of a failed attempt's log line, and of the `onTaskError` hook's call. */
export function failureFields(
  task: string,
  request: TaskRequest,
  attempt: number,
  startedAt: number,
  timedOut: boolean,
  error: Error,
) {
  return {
    ...requestFields(task, request),
    attempt,
    durationMs: Math.round((performance.now() - startedAt) * 100) / 100,
    timedOut,
    error: errorFields(error),
  };
}

/**
 * A task's last attempt failed: logs it at `error`, then calls the `onTaskError` hook. The
 * in-process runner and the BullMQ worker both end a failed task here.
 */
export function reportTaskFailed(
  logger: Logger,
  fields: ReturnType<typeof failureFields> & { jobId?: string },
  error: Error,
  request: TaskRequest,
  onTaskError: ((failure: TaskFailure) => unknown) | undefined,
): void {
  safeLog(logger, 'error', LOG_MESSAGES.taskFailed, fields);
  if (onTaskError === undefined) return;
  const { task, attempt, durationMs, timedOut, jobId } = fields;
  const withJob = jobId === undefined ? {} : { jobId };
  const failure: TaskFailure = { task, attempt, durationMs, timedOut, error, request, ...withJob };
  callHook(logger, 'onTaskError', { ...requestFields(task, request), ...withJob }, () =>
    onTaskError(failure),
  );
}

/**
 * Logs, and never throws. A logger that threw once (a transport whose `log()` throws) is jammed:
 * winston buffers every later record behind it and drops them silently. So from then on this
 * logger's records go to stderr as JSON lines, and none is lost.
 */
export function safeLog(logger: Logger, level: LogLevel, message: string, fields: object): void {
  if (jammedLoggers.has(logger)) {
    writeToStderr(level, message, fields, undefined);
    return;
  }
  try {
    logger[level](message, fields);
  } catch (loggerError) {
    jammedLoggers.add(logger);
    writeToStderr(level, message, fields, loggerError);
  }
}

const jammedLoggers = new WeakSet<Logger>();
const guardedLoggers = new WeakSet<Logger>();

/**
 * Keeps a logger's `'error'` event (a transport that failed asynchronously) from becoming an
 * uncaught exception. Winston stops delivering to a transport that failed, so the logger is
 * treated as jammed from then on, like one that threw.
 */
export function guardLogger(logger: Logger): void {
  if (guardedLoggers.has(logger) || typeof logger.on !== 'function') return;
  guardedLoggers.add(logger);
  logger.on('error', (loggerError: unknown) => {
    jammedLoggers.add(logger);
    writeToStderr('error', LOG_MESSAGES.loggerFailed, {}, loggerError);
  });
}

/** Calls a user's hook; a throw or a rejection is logged, never let loose. */
export function callHook(logger: Logger, hook: string, fields: object, call: () => unknown): void {
  const logFailure = (thrown: unknown) =>
    safeLog(logger, 'error', LOG_MESSAGES.hookFailed, {
      ...fields,
      hook,
      error: errorFields(toError(thrown)),
    });
  try {
    const result = call();
    if (isThenable(result)) settle(result).catch(logFailure);
  } catch (thrown) {
    logFailure(thrown);
  }
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function writeToStderr(level: string, message: string, fields: object, loggerError: unknown): void {
  try {
    const record = {
      level,
      message,
      ...fields,
      ...(loggerError !== undefined && { loggerError: errorFields(toError(loggerError), false) }),
    };
    process.stderr.write(`${JSON.stringify(record)}\n`);
  } catch {
    // stderr is gone too: there is nowhere left to say it.
  }
}
