/**
 * How the library's log records reach their destination: the default logger, `safeLog()` (which
 * never throws and never loses a record unseen, through the logger's guard in logger-guard.ts),
 * paced writing for many lines at once, and `closeLogger()` for a shutdown that loses no line.
 */
import winston from 'winston';
import type { Logger } from 'winston';
import { closeGuarded } from './logger-close';
import { guardOf } from './logger-guard';
import { LOG_MESSAGES, type LogLevel } from './log-messages';
import { MAX_TIMER_MS, checkInteger, checkLogger, checkOptionsObject } from './options';

export { LOG_MESSAGES, type LogLevel };

/** The default logger: JSON lines on stdout, which escapes newlines so no message can forge a line. */
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
  guardOf(logger);
  return logger;
}

/**
 * Logs, and never throws. The record goes to the logger, or waits for a busy one, or goes to
 * stderr (formatted by the logger's own format) when the logger is stuck or closed; a record
 * that stderr cannot take either is counted (`logRecordsDropped`). See logger-guard.ts.
 */
export function safeLog(logger: Logger, level: LogLevel, message: string, fields: object): void {
  guardOf(logger).log(level, message, fields);
}

/**
 * Resolves once `logger` has room for a record, or is stuck, or at `deadline` (a
 * `performance.now()`): for a writer of many lines at once (`drain()`'s), so that a slow
 * transport gets them all rather than stderr.
 */
export function roomIn(logger: Logger, deadline: number): Promise<void> {
  return guardOf(logger).room(deadline);
}

/** Writes a record to stderr at once, formatted as `logger` would have: for lines past their deadline. */
export function spillRecord(
  logger: Logger,
  level: LogLevel,
  message: string,
  fields: object,
): void {
  guardOf(logger).spillRecord(level, message, fields);
}

/**
 * How many of `logger`'s records a close that timed out left in doubt: handed to a transport
 * (or by a Console transport to stdout) that had not acknowledged them yet, and may have written
 * them, or may not.
 */
export function recordsInDoubt(logger: Logger): number {
  return guardOf(logger).inDoubt;
}

/** How many of `logger`'s records were dropped: stderr could not take them either. */
export function droppedRecords(logger: Logger): number {
  return guardOf(logger).dropped;
}

export interface CloseLoggerOptions {
  /** How long to wait for the logger and its transports to finish writing. Default: `5000`. */
  timeoutMs?: number;
}

/**
 * Ends a winston logger once it has handed every record to its transports, and resolves once
 * each transport has finished writing (a `File` transport: its data handed to the operating
 * system), so that `process.exit()` after it loses no line. Resolves `true` then. After
 * `timeoutMs` (a transport that never finishes) it gives every record still held (by the
 * library, by winston, by each transport) to stderr, says so there, and resolves `false`.
 * Records the library logs after the call go to stderr. The logger is guarded like any logger
 * given to the library.
 */
export function closeLogger(logger: Logger, options?: CloseLoggerOptions): Promise<boolean> {
  checkLogger('closeLogger', logger);
  const { timeoutMs } = checkOptionsObject('closeLogger', options, ['timeoutMs']);
  const limit = checkInteger('closeLogger', 'timeoutMs', timeoutMs, 5_000, 0, MAX_TIMER_MS);
  return closeGuarded(guardOf(logger), limit);
}
