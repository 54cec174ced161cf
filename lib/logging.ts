/**
 * How a log record reaches its destination: the constant messages of every line the library
 * writes (winston drops metadata when a message holds a `%s`-like token), the default logger,
 * and delivery that survives a logger that throws, stalls or was closed, down to `closeLogger()`
 * for a shutdown that loses no line.
 */
import winston from 'winston';
import type { Logger } from 'winston';
import { MAX_TIMER_MS, checkInteger, checkLogger, checkOptionsObject } from './options';
import { inTime } from './in-time';
import { writeRecordToStderr } from './stderr';
import { errorFields, toError } from './thrown';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** The messages, so that users can filter on them and tests can find them. */
export const LOG_MESSAGES = {
  taskFailed: 'background task failed',
  taskRetrying: 'background task attempt failed, retrying',
  taskRejected: 'background task rejected',
  tasksRejected: 'background tasks rejected: queue full',
  taskAbandoned: 'background task abandoned',
  hookFailed: 'background task error hook failed',
  enqueueFailed: 'durable enqueue failed, running the task in-process',
  enqueueFailedAbandoned: 'durable enqueue failed after drain() gave the task up; it does not run',
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

/**
 * Logs, and never throws; a record the logger cannot take goes to stderr as a JSON line instead
 * (synchronous for files and pipes), so none is lost:
 * - a logger that threw once (a transport whose `log()` throws) is jammed: winston buffers every
 *   later record behind it and drops them silently, so its records go to stderr from then on;
 * - a logger that has `MAX_UNACKNOWLEDGED` records waiting has stopped acknowledging them (a
 *   transport whose callback never comes, say): winston would hold every later record in memory,
 *   without bound, so records go to stderr while that many wait;
 * - a logger that was ended (`closeLogger()`) would drop the record with an error.
 */
export function safeLog(logger: Logger, level: LogLevel, message: string, fields: object): void {
  if (jammedLoggers.has(logger) || isClosed(logger) || isStalled(logger)) {
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

/** The most records that may wait unacknowledged on one logger before records go to stderr. */
export const MAX_UNACKNOWLEDGED = 1_000;

/** How long `keptUp()` waits for a logger that has stopped taking records. */
const KEEP_UP_WAIT_MS = 1_000;

/**
 * Resolves once the logger has fewer than half `MAX_UNACKNOWLEDGED` records waiting, or after a
 * second without that: for a writer of many lines that can wait (`drain()`'s), so that a slow but
 * working transport gets them all. A logger that is not a stream resolves at once.
 */
export function keptUp(logger: Logger): Promise<void> {
  if (waitingOn(logger) < MAX_UNACKNOWLEDGED / 2) return Promise.resolve();
  const stream = logger as unknown as NodeJS.EventEmitter;
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stream.off('drain', done);
      resolve();
    };
    // winston's write() returns false past its high-water mark, so 'drain' comes once the wait is over.
    const timer = setTimeout(done, KEEP_UP_WAIT_MS);
    stream.on('drain', done);
  });
}

export interface CloseLoggerOptions {
  /** How long to wait for the transports to finish writing. Default: `5000`. */
  timeoutMs?: number;
}

/**
 * Ends a winston logger and resolves once each of its transports has finished writing (a `File`
 * transport: its data handed to the operating system), so that `process.exit()` after it loses
 * no line. Resolves `true` then, or `false` after `timeoutMs` (a transport that never finishes;
 * said on stderr). Records logged by the library after this go to stderr.
 */
export function closeLogger(logger: Logger, options?: CloseLoggerOptions): Promise<boolean> {
  checkLogger('closeLogger', logger);
  const { timeoutMs } = checkOptionsObject('closeLogger', options, ['timeoutMs']);
  const limit = checkInteger('closeLogger', 'timeoutMs', timeoutMs, 5_000, 0, MAX_TIMER_MS);
  // winston's own 'finish' comes before its transports have written (winston issue #1250). A
  // Console transport has finished once it handed its lines to process.stdout or stderr, which
  // are asynchronous when they are pipes: they must be drained too.
  const finished = Promise.all(logger.transports.map(whenFinished)).then(() =>
    Promise.all([whenDrained(process.stdout), whenDrained(process.stderr)]),
  );
  logger.end();
  return inTime(finished, limit).then((done) => {
    if (!done) {
      writeToStderr('error', LOG_MESSAGES.loggerCloseTimedOut, { timeoutMs: limit }, undefined);
    }
    return done;
  });
}

const jammedLoggers = new WeakSet<Logger>();
const stalledLoggers = new WeakSet<Logger>();
const guardedLoggers = new WeakSet<Logger>();

/** What safeLog reads of a logger's stream state (readable-stream 3, under winston 3). */
interface StreamState {
  writableLength?: number;
  readableLength?: number;
  _writableState?: { ending?: boolean };
}

function isClosed(logger: Logger): boolean {
  return (logger as unknown as StreamState)._writableState?.ending === true;
}

/**
 * True while `MAX_UNACKNOWLEDGED` records wait. The first record of each such stall says so on
 * stderr; the stall is over once the wait is down to half, so a logger at the limit does not
 * print a notice per record.
 */
function isStalled(logger: Logger): boolean {
  const waiting = waitingOn(logger);
  if (stalledLoggers.has(logger)) {
    if (waiting > MAX_UNACKNOWLEDGED / 2) return waiting >= MAX_UNACKNOWLEDGED;
    stalledLoggers.delete(logger);
    return false;
  }
  if (waiting < MAX_UNACKNOWLEDGED) return false;
  stalledLoggers.add(logger);
  writeToStderr('error', LOG_MESSAGES.loggerStalled, { waiting }, undefined);
  return true;
}

/** Records the logger holds, taken and not yet handed to its transports. */
function waitingOn(logger: Logger): number {
  const stream = logger as unknown as StreamState;
  return (stream.writableLength ?? 0) + (stream.readableLength ?? 0);
}

/**
 * Resolves once a stream has handed everything written to it to the operating system: an empty
 * write calls back after every write before it ('drain' comes only after a write that was refused).
 */
function whenDrained(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0 || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.write('', () => resolve());
  });
}

/** Resolves once a transport has finished (or failed, or closed): nothing more will be written. */
function whenFinished(transport: object): Promise<void> {
  const stream = transport as NodeJS.EventEmitter & {
    _writableState?: { finished?: boolean; destroyed?: boolean; errored?: unknown };
  };
  const state = stream._writableState;
  // Finished, or past finishing: a transport that failed or was destroyed writes nothing more.
  if (state?.finished === true || state?.destroyed === true || (state?.errored ?? null) !== null)
    return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => resolve();
    stream.once('finish', done).once('close', done).once('error', done);
  });
}

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

function writeToStderr(level: string, message: string, fields: object, loggerError: unknown): void {
  const record = {
    level,
    message,
    ...fields,
    ...(loggerError !== undefined && { loggerError: errorFields(toError(loggerError), false) }),
  };
  writeRecordToStderr(record);
}
