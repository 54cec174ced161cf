/**
 * The library's hold on a winston logger it writes to: the guards of its transports and of its
 * format, a bounded line for records while the logger is busy, and stderr for what it cannot
 * take. The rules:
 * - nothing the logger, a transport or a format throws or emits becomes an uncaught exception;
 * - the library's records never pile up in winston: past `LOGGER_ROOM` records waiting there,
 *   they wait in line here (at most `MAX_WAITING_RECORDS`), fed to the logger as it takes them;
 * - a logger that takes no record for `STALL_MS` while records wait is stuck: its records go to
 *   stderr, as stderr has room, until it takes one again (said once per stall);
 * - a record that goes to stderr is formatted by the logger's own format and `defaultMeta`, then
 *   by the format of each transport that takes its level, so that what the app's formats remove
 *   is removed there too;
 * - what stderr cannot take is counted in `dropped` (`stats().logRecordsDropped`).
 * `closeLogger()`'s sequence is in logger-close.ts.
 */
import { AsyncResource } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'winston';
import { Fifo } from './fifo';
import {
  LEVEL,
  applyFormat,
  isRecord,
  lineOf,
  minimalLine,
  noticeLine,
  recordOf,
  type Format,
  type Info,
} from './log-format';
import { LOG_MESSAGES, type LogLevel } from './log-messages';
import {
  countDrop,
  dropIfFull,
  restoreUnreportedDrops,
  stderrHasRoom,
  takeUnreportedDrops,
  writeToStderr,
  type DropCount,
} from './stderr';
import { hasReaders, heldReads, heldWrites, isEnded, waitingOn } from './stream-backlog';
import { errorFields, toError } from './thrown';
import {
  TransportGuard,
  tagOf,
  type GuardedTransport,
  type TransportOwner,
} from './transport-guard';

/** How many records may wait inside winston before the library's own wait in line. */
export const LOGGER_ROOM = 500;
/** The most records that wait in line for a busy logger; past that they go to stderr. */
export const MAX_WAITING_RECORDS = 10_000;
/** How long a logger may take no record, while records wait, before it counts as stuck. */
export const STALL_MS = 1_000;
/** How often waiting records are offered to the logger again. */
const FEED_MS = 10;
/** The most time one turn spends giving a stuck logger's waiting records to stderr. */
const SPILL_MS_PER_TURN = 20;

/** The guard of `logger`, made (and the logger guarded) at its first use. */
export function guardOf(logger: Logger): LoggerGuard {
  let guard = guards.get(logger);
  if (guard === undefined) {
    guard = new LoggerGuard(logger as GuardedLogger);
    guards.set(logger, guard);
  }
  return guard;
}

interface Waiting {
  readonly level: LogLevel;
  readonly message: string;
  readonly fields: object;
  /** The async context it was logged in (a task's span, for instrumentation-winston). */
  readonly scope: AsyncResource;
}

/** What the guard reads of a winston logger beyond its typed API. */
type GuardedLogger = Omit<Logger, '_transform' | 'add'> & {
  _transform?: (info: Info, encoding: unknown, callback: () => void) => void;
  add?: (transport: unknown) => unknown;
  defaultMeta?: unknown;
  silent?: boolean;
};

export class LoggerGuard implements TransportOwner, DropCount {
  /** Records of this logger that stderr could not take either. */
  dropped = 0;
  /** Records a transport had been given and not acknowledged at a close that timed out: see `TransportGuard.spillHeld`. */
  inDoubt = 0;
  /** `closeLogger()` was called: the library's records go to stderr from now on. */
  closed = false;
  /** `closeLogger()` ended the logger. */
  endedByClose = false;
  /** Past this `performance.now()` (a close's deadline), records are counted as dropped rather than formatted. */
  spillDeadline = Infinity;
  readonly spilledForAll = new WeakSet<object>();
  private readonly transports = new WeakMap<object, TransportGuard>();
  /** The guarded transports still the logger's: piped, or failed for good (winston may unpipe those). */
  private readonly guarded = new Set<TransportGuard>();
  private readonly waiting = new Fifo<Waiting>();
  private feedTimer: NodeJS.Timeout | undefined = undefined;
  private feedSoon = false;
  /** When the logger last took a record, or records began to wait: the stall clock. */
  private movedAt = 0;
  private stalled = false;
  /** What winston held when it stalled, and at the last feed: less since means it moved. */
  private stalledWith = 0;
  private heldBefore = 0;
  private formatNoticed = false;
  private loggerNoticed = false;
  private readonly whenRoom: Array<() => void> = [];

  constructor(readonly logger: GuardedLogger) {
    this.guardLogger();
    this.adoptTransports();
  }

  get ended(): boolean {
    return this.endedByClose || isEnded(this.logger);
  }

  /** Logs one of the library's records: to the logger now, in line for it, or to stderr. */
  log(level: LogLevel, message: string, fields: object): void {
    if (this.closed || isEnded(this.logger)) {
      this.spillRecord(level, message, fields);
      return;
    }
    this.adoptTransports();
    if (this.stalled && this.hasMoved()) this.stalled = false;
    if (this.waiting.length === 0 && !this.stalled && this.hasRoom()) {
      this.write(level, message, fields);
      return;
    }
    if (this.waiting.length >= MAX_WAITING_RECORDS) {
      this.spillRecord(level, message, fields);
      return;
    }
    // The stall clock starts when records begin to wait (a stuck logger's clock keeps running).
    if (this.waiting.length === 0 && !this.stalled) this.movedAt = performance.now();
    const scope = new AsyncResource('express-background-tasks.log');
    this.waiting.push({ level, message, fields, scope });
    this.scheduleFeed();
  }

  /**
   * Resolves once the logger has room for a record now (or is stuck, or was closed), or at
   * `deadline`: for a writer of many lines that can wait, so that a slow transport gets them all.
   */
  room(deadline: number): Promise<void> {
    if (this.closed || this.stalled || (this.waiting.length === 0 && this.hasRoom()))
      return Promise.resolve();
    if (this.waiting.length === 0 && this.whenRoom.length === 0) this.movedAt = performance.now();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, deadline - performance.now()));
      this.whenRoom.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.scheduleFeed();
    });
  }

  /**
   * Resolves `true` once no record waits here, winston holds none, and every live transport has
   * taken and acknowledged every record it was given; `false` at `deadline`. Only then may the
   * logger be ended: a transport ended while it holds records (winston's File transport waiting
   * for its stream's 'drain', say) may never write them.
   */
  settled(deadline: number): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.waiting.length === 0 && waitingOn(this.logger) === 0 && this.transportsIdle())
          return resolve(true);
        if (performance.now() >= deadline) return resolve(false);
        this.feed();
        setTimeout(check, FEED_MS);
      };
      check();
    });
  }

  /** The transports not failed for good, as they are now (a finished one is unpiped). */
  liveTransports(): TransportGuard[] {
    return [...this.guarded].filter((guard) => !guard.dead);
  }

  /**
   * Gives everything still held to stderr: the records waiting here, and those winston holds
   * (before and after the logger's format), each once, and what each transport holds (see
   * `TransportGuard.spillHeld`). For a close that timed out. Returns how many records it gave,
   * and how many are in doubt.
   */
  spillHeld(): { spilled: number; inDoubt: number } {
    let spilled = 0;
    for (let record = this.waiting.shift(); record !== undefined; record = this.waiting.shift()) {
      this.spillRecord(record.level, record.message, record.fields);
      spilled++;
    }
    const format = this.logger.format as Format | undefined;
    for (const chunk of heldWrites(this.logger)) spilled += this.spillRaw(chunk, format);
    for (const chunk of heldReads(this.logger)) spilled += this.spillRaw(chunk, undefined);
    let inDoubt = 0;
    for (const guard of this.guarded) inDoubt += guard.spillHeld();
    this.inDoubt += inDoubt;
    this.wakeRoomWaiters();
    return { spilled, inDoubt };
  }

  /** Writes one of the library's records straight to stderr, formatted as the logger's transports would have. */
  spillRecord(level: LogLevel, message: string, fields: object): void {
    if (this.logger.silent === true || !this.levelEnabled(level) || this.dropInstead()) return;
    const record = recordOf(this.logger, level, message, fields);
    if ('minimal' in record) this.spill(record.minimal);
    else this.spillRaw(record.info, this.logger.format as Format | undefined);
  }

  /** Gives to stderr what the transports that failed for good still hold: they will never write it. */
  spillFromDead(): void {
    for (const guard of this.guarded) if (guard.dead) guard.spillHeld();
  }

  /** Resolves once each of `transports` has acknowledged every record it was given, unless it failed for good. */
  acknowledgedAll(transports: readonly TransportGuard[]): Promise<unknown> {
    return Promise.all(
      transports.map((guard) => (guard.dead ? undefined : guard.acknowledgedAll())),
    );
  }

  /** A notice of the library's own about the logger, on stderr (where it is seen even if the logger is broken). */
  notice(message: string, fields: object): void {
    // Not counted among the logger's records if dropped: the next drop line reports it.
    writeToStderr(noticeLine(message, fields));
  }

  spill(line: string): void {
    writeToStderr(line, this);
  }

  dropInstead(): boolean {
    if (performance.now() <= this.spillDeadline) return dropIfFull(this);
    countDrop(this);
    return true;
  }

  progress(): void {
    this.movedAt = performance.now();
    if (this.waiting.length > 0 || this.whenRoom.length > 0) this.feedNextTurn();
  }

  transportFailed(guard: TransportGuard, error: unknown, forGood: boolean): void {
    if (guard.noticed && !forGood) return;
    guard.noticed = true;
    this.notice(LOG_MESSAGES.loggerFailed, {
      transport: guard.name,
      forGood,
      loggerError: errorFields(toError(error), false),
    });
  }

  transportDied(guard: TransportGuard): void {
    // A stream that closed is unpiped for good (winston pipes one that only errored again, for
    // issue #1364): then the logger, with no reader, would hold every later record forever. Piped
    // again, it flows, and the dead transport's guard sends what comes to stderr.
    setImmediate(() => {
      if (this.logger.transports.includes(guard.transport as never) || this.ended) return;
      try {
        this.logger.add?.(guard.transport);
      } catch {
        // an ended logger, say: nothing more will be written through it
      }
    });
  }

  formatFailed(error: unknown): void {
    if (this.formatNoticed) return;
    this.formatNoticed = true;
    // The error's name only: its message may quote the record the format could not clean.
    this.notice(LOG_MESSAGES.loggerFormatFailed, {
      loggerError: { name: errorFields(toError(error), false).name },
    });
  }

  /**
   * Guards the transports added since the last look (winston's `add()`, `configure()`), and lets
   * go of those the app removed (a removed transport is not waited for, and is not remembered).
   */
  adoptTransports(): void {
    const piped = this.logger.transports ?? [];
    for (const transport of piped) {
      if (this.transports.has(transport)) continue;
      const guard = new TransportGuard(transport as unknown as GuardedTransport, this);
      this.transports.set(transport, guard);
      this.guarded.add(guard);
    }
    if (this.guarded.size === piped.length) return;
    for (const guard of this.guarded) {
      if (guard.dead || piped.includes(guard.transport as never)) continue;
      guard.removed = true;
      this.guarded.delete(guard);
    }
  }

  private transportsIdle(): boolean {
    for (const guard of this.guarded) if (!guard.dead && !guard.idle()) return false;
    return true;
  }

  private write(level: LogLevel, message: string, fields: object): void {
    const dropped = takeUnreportedDrops();
    try {
      if (dropped > 0) this.logger.error(LOG_MESSAGES.logRecordsDropped, { dropped });
      this.logger[level](message, fields);
    } catch (error) {
      // Not winston's own failure (those are guarded): a logger whose method throws.
      if (dropped > 0) restoreUnreportedDrops(dropped);
      this.loggerFailed(error);
      this.spillRecord(level, message, fields);
    }
  }

  /**
   * Hands waiting records on: to the logger while it has room, or, while it is stuck, to stderr
   * while stderr has room and for at most SPILL_MS_PER_TURN a turn (formatting them takes time),
   * so that a burst waits here rather than overflow stderr's buffer or hold the event loop. A
   * logger that has not moved for STALL_MS while records wait is stuck.
   */
  private feed(): void {
    this.feedSoon = false;
    const held = waitingOn(this.logger);
    if (held < this.heldBefore) this.movedAt = performance.now(); // a logger without guarded transports
    if (this.stalled && this.hasMoved()) this.stalled = false;
    let more = false;
    if (!this.stalled) {
      while (this.waiting.length > 0 && this.hasRoom()) {
        const { level, message, fields, scope } = this.waiting.shift()!;
        scope.runInAsyncScope(this.write, this, level, message, fields);
      }
    } else {
      const until = performance.now() + SPILL_MS_PER_TURN;
      while (this.waiting.length > 0 && stderrHasRoom() && !(more = performance.now() > until)) {
        const { level, message, fields } = this.waiting.shift()!;
        this.spillRecord(level, message, fields);
      }
    }
    this.heldBefore = waitingOn(this.logger);
    if (
      this.waiting.length === 0 &&
      (this.whenRoom.length === 0 || this.hasRoom() || this.stalled)
    ) {
      this.wakeRoomWaiters();
      return;
    }
    if (!this.stalled && this.stuckFor()) this.stall();
    else if (more) this.feedNextTurn();
    else this.scheduleFeed();
  }

  /** The logger is stuck: what waits goes to stderr, and so will its records until it moves. */
  private stall(): void {
    this.stalled = true;
    this.stalledWith = waitingOn(this.logger);
    this.notice(LOG_MESSAGES.loggerStalled, { waiting: this.stalledWith + this.waiting.length });
    this.wakeRoomWaiters();
    this.feedNextTurn();
  }

  /** True when a stuck logger has taken a record since it stalled. */
  private hasMoved(): boolean {
    return waitingOn(this.logger) < this.stalledWith || performance.now() - this.movedAt < STALL_MS;
  }

  private stuckFor(): boolean {
    return performance.now() - this.movedAt >= STALL_MS;
  }

  private hasRoom(): boolean {
    return waitingOn(this.logger) < LOGGER_ROOM;
  }

  private scheduleFeed(): void {
    if (this.feedTimer !== undefined) return;
    this.feedTimer = setTimeout(() => {
      this.feedTimer = undefined;
      this.feed();
    }, FEED_MS);
  }

  private feedNextTurn(): void {
    if (this.feedSoon) return;
    this.feedSoon = true;
    setImmediate(() => this.feed());
  }

  private wakeRoomWaiters(): void {
    for (const wake of this.whenRoom.splice(0)) wake();
  }

  /**
   * A record that reaches no transport: formatted with `format` (none for one winston has
   * formatted already), then once for each transport that takes its level, as that transport
   * formats it (one line with no transport); marked, so that no transport is given it later.
   */
  private spillRaw(chunk: unknown, format: Format | undefined): number {
    if (typeof chunk !== 'object' || chunk === null) return 0;
    const raw = chunk as Info;
    this.spilledForAll.add(tagOf(raw));
    const formatted = applyFormat(raw, format);
    if (formatted === 'filtered') return 1;
    if (formatted === 'threw') {
      this.formatFailed(new Error('the logger format threw'));
      this.spill(minimalLine(raw));
      return 1;
    }
    const transports = [...this.guarded];
    if (transports.length === 0) this.spill(lineOf(formatted.info));
    for (const guard of transports) guard.spillCopy(formatted.info);
    return 1;
  }

  private levelEnabled(level: LogLevel): boolean {
    const check = this.logger.isLevelEnabled;
    if (typeof check !== 'function') return true;
    try {
      return check.call(this.logger, level);
    } catch {
      return true;
    }
  }

  /** A failure of the logger itself, said once: a method that throws, an 'error' of no transport. */
  private loggerFailed(error: unknown): void {
    if (this.loggerNoticed) return;
    this.loggerNoticed = true;
    this.notice(LOG_MESSAGES.loggerFailed, {
      transport: '(the logger itself)',
      forGood: false,
      loggerError: errorFields(toError(error), false),
    });
  }

  /**
   * Keeps a logger's `'error'` event (a transport that failed asynchronously, a write after end)
   * from becoming an uncaught exception, and its format's throw from escaping winston's stream
   * machinery, where it happens in a later turn when the logger was busy.
   */
  private guardLogger(): void {
    const logger = this.logger;
    if (typeof logger.on === 'function') {
      logger.on('error', (error: unknown, transport?: object) => {
        const guard = transport === undefined ? undefined : this.transports.get(transport);
        if (guard !== undefined) guard.die(error);
        else this.loggerFailed(error);
      });
    }
    const transform = logger._transform;
    if (typeof transform === 'function') {
      logger._transform = (info, encoding, callback) => {
        if (logger.silent !== true && this.guarded.size > 0 && !hasReaders(logger)) {
          // Its transports failed, and winston has not piped them again yet: it would print the
          // raw record to the console, past the app's format ("Attempt to write logs with no
          // transports"). The record goes to stderr for them, as any record they cannot take.
          // (A logger that never had a transport keeps winston's ways: it holds its records
          // for the first one added.)
          if (isRecord(info)) {
            info[LEVEL] ??= info.level;
            if (this.levelEnabled(info[LEVEL] as LogLevel))
              this.spillRaw(info, logger.format as Format | undefined);
          }
          callback();
          return;
        }
        try {
          transform.call(logger, info, encoding, callback);
        } catch (error) {
          // winston has called back already (its `finally`): the record reached no transport.
          this.formatFailed(error);
          this.spill(minimalLine(info));
        }
      };
    }
    const add = logger.add;
    if (typeof add === 'function') {
      logger.add = ((transport: unknown) => {
        try {
          add.call(logger, transport);
        } catch (error) {
          // winston pipes a transport that emitted 'error' again, and that throws for a winston-2
          // transport's wrapper (it reads `log.length` of a stream that has no `log`): inside an
          // 'error' event, an uncaught exception. The app's own add() of a bad transport throws.
          if (!this.transports.has(transport as object)) throw error;
          this.loggerFailed(error);
        }
        this.adoptTransports();
        return logger;
      }) as typeof logger.add;
    }
  }
}

const guards = new WeakMap<Logger, LoggerGuard>();
