/**
 * The last resort for a log line that no transport can take: stderr, written so that it never
 * holds the event loop for long. A line is written at once while stderr takes it (the write is
 * non-blocking); past that, lines wait in a bounded buffer and are written as the reader takes
 * them. A line that finds the buffer full, or stderr closed, is dropped and counted, and the count
 * is written as one line as soon as stderr has taken what waited (or with the next line).
 * `flushStderr()` may wait for the reader, up to a deadline: for `closeLogger()` at exit.
 */
import { writevSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { noticeLine } from './log-format';
import { LOG_MESSAGES } from './log-messages';

/** The most time the fallback spends writing to stderr in one turn of the event loop, in ms. */
export const MAX_STDERR_MS_PER_TURN = 50;
/** The most bytes of lines that wait for a stderr that is not reading. */
export const MAX_STDERR_BUFFER_BYTES = 8 * 1_048_576;

/** Where the lines dropped for one owner (a logger's guard) are counted. */
export interface DropCount {
  dropped: number;
}

/** Writes `text` and a newline to stderr, now or as soon as it takes it; never throws, never waits. */
export function writeToStderr(text: string, owner?: DropCount): void {
  fallback.write(text, owner);
}

/**
 * Writes what waits, waiting for the reader until `deadline` (a `performance.now()`): the one
 * place the fallback blocks, for a process about to exit. Returns true when nothing is left.
 */
export function flushStderr(deadline: number): boolean {
  return fallback.flush(deadline);
}

/** True while stderr's buffer has room for a large line (a record that waits may come now). */
export function stderrHasRoom(): boolean {
  return stderrBacklog().bytes + LARGE_LINE_BYTES <= MAX_STDERR_BUFFER_BYTES;
}

/**
 * Counts a line as dropped without making it, when stderr's buffer is full: formatting
 * thousands of records that cannot be written would hold the event loop for nothing.
 */
export function dropIfFull(owner: DropCount): boolean {
  return fallback.dropIfFull(owner);
}

/** Counts a line as dropped without making it (a close past its deadline), to be reported like any drop. */
export function countDrop(owner: DropCount): void {
  fallback.countDrop(owner);
}

/**
 * Gives up on the lines that still wait for `owner` (a logger being closed, past its deadline):
 * each is counted as dropped, since the process is about to exit without them.
 */
export function giveUpOn(owner: DropCount): void {
  fallback.giveUpOn(owner);
}

/**
 * The lines dropped and not yet reported, now counted as reported: for a logger that takes
 * records again to report them itself.
 */
export function takeUnreportedDrops(): number {
  return fallback.takeUnreported();
}

/** Counts `count` drops as not yet reported again: a logger that was to report them failed. */
export function restoreUnreportedDrops(count: number): void {
  fallback.restoreUnreported(count);
}

export interface Backlog {
  /** Lines waiting for stderr. */
  lines: number;
  bytes: number;
  /** The longest time spent writing to stderr in one turn of the event loop so far. */
  maxTurnMs: number;
  /** Lines dropped whose count no line has told yet. */
  unreported: number;
}

/** What the fallback holds, and how long it has held the event loop at most. */
export function stderrBacklog(): Backlog {
  return fallback.backlog();
}

interface Line {
  readonly bytes: Buffer;
  readonly owner: DropCount | undefined;
}

/** A line as large as the library's own get (three texts of 8,192 characters, and fields). */
const LARGE_LINE_BYTES = 65_536;
/** No line is shorter: a buffer with less room than this is full. */
const MIN_LINE_BYTES = 16;
/** About how many bytes one write takes at most. */
const BATCH_BYTES = 65_536;
/** The longest wait before a full stderr is tried again. */
const MAX_RETRY_MS = 10;

class StderrFallback {
  private lines: Array<Line | undefined> = [];
  private head = 0;
  /** Bytes of the first line already written. */
  private written = 0;
  private bufferedBytes = 0;
  /** Time spent in writes this turn of the event loop, and whether its end is scheduled. */
  private spentMs = 0;
  private maxTurnMs = 0;
  private turnEnding = false;
  /** Armed while stderr is full: an immediate, then timers that back off (see retryLater). */
  private retry: NodeJS.Immediate | NodeJS.Timeout | undefined = undefined;
  /** Tries since stderr last took a byte. */
  private fullTries = 0;
  private unreported = 0;
  private opened = false;

  write(text: string, owner: DropCount | undefined): void {
    const bytes = Buffer.from(`${text}\n`);
    const report = this.unreported > 0 ? reportLine(this.unreported) : undefined;
    const needed = bytes.length + (report?.length ?? 0);
    if (this.bufferedBytes + needed > MAX_STDERR_BUFFER_BYTES) {
      this.drop(owner);
      return;
    }
    if (report !== undefined) this.pushReport();
    this.push({ bytes, owner });
    if (this.retry === undefined) this.pump(false, 0);
  }

  flush(deadline: number): boolean {
    if (this.unreported > 0) this.pushReport();
    this.cancelRetry();
    return this.pump(true, deadline);
  }

  dropIfFull(owner: DropCount): boolean {
    if (this.bufferedBytes + MIN_LINE_BYTES <= MAX_STDERR_BUFFER_BYTES) return false;
    this.drop(owner);
    return true;
  }

  countDrop(owner: DropCount): void {
    this.drop(owner);
  }

  giveUpOn(owner: DropCount): void {
    const kept: Array<Line | undefined> = [];
    for (let i = this.head; i < this.lines.length; i++) {
      const line = this.lines[i]!;
      if (line.owner !== owner) {
        kept.push(line);
        continue;
      }
      this.bufferedBytes -= line.bytes.length;
      this.drop(owner);
      // A line begun is ended, so that the next line does not run into what was written of it.
      if (i === this.head && this.written > 0) {
        kept.push({ bytes: Buffer.from('\n'), owner: undefined });
        this.bufferedBytes += 1;
        this.written = 0;
      }
    }
    this.lines = kept;
    this.head = 0;
  }

  restoreUnreported(count: number): void {
    this.unreported += count;
  }

  takeUnreported(): number {
    const count = this.unreported;
    this.unreported = 0;
    return count;
  }

  backlog(): Backlog {
    const { maxTurnMs, unreported } = this;
    return {
      lines: this.lines.length - this.head,
      bytes: this.bufferedBytes,
      maxTurnMs,
      unreported,
    };
  }

  /** @internal Called by the retry timer and at the end of a turn. */
  resume(): void {
    this.retry = undefined;
    this.pump(false, 0);
  }

  /** @internal Called at the end of a turn in which the fallback wrote. */
  endTurn(): void {
    this.turnEnding = false;
    this.maxTurnMs = Math.max(this.maxTurnMs, this.spentMs);
    this.spentMs = 0;
    if (this.retry === undefined && this.head < this.lines.length) this.pump(false, 0);
  }

  /**
   * Writes lines while stderr takes them. Without `blocking`, stops at a full pipe (tried again
   * in RETRY_MS) or at the turn's time budget (resumed next turn); with it, waits for the reader
   * until `deadline`. Returns true when nothing is left.
   */
  private pump(blocking: boolean, deadline: number): boolean {
    this.open();
    while (this.head < this.lines.length) {
      if (!blocking && this.spentMs >= MAX_STDERR_MS_PER_TURN) return false;
      const started = performance.now();
      let count: number;
      try {
        // Several lines a write: a burst of thousands costs dozens of syscalls, not thousands.
        count = writevSync(2, this.nextBatch());
      } catch (error) {
        this.spend(started, blocking);
        if ((error as NodeJS.ErrnoException | null)?.code !== 'EAGAIN') {
          // stderr is closed, or its reader is gone: this line cannot arrive.
          const line = this.lines[this.head]!;
          this.shift();
          this.drop(line.owner);
          continue;
        }
        if (!blocking) {
          this.retryLater();
          return false;
        }
        if (performance.now() >= deadline) return false;
        Atomics.wait(sleeper, 0, 0, 1);
        continue;
      }
      this.spend(started, blocking);
      this.fullTries = 0;
      this.consume(count);
      // stderr takes lines again: its drops are told now, not with the next line that comes.
      if (this.head === this.lines.length && this.unreported > 0) this.pushReport();
    }
    return true;
  }

  /** The lines from the first (what is left of it) up to BATCH_BYTES, for one write. */
  private nextBatch(): Buffer[] {
    const first = this.lines[this.head]!.bytes;
    const batch = [this.written === 0 ? first : first.subarray(this.written)];
    let bytes = batch[0].length;
    for (let i = this.head + 1; i < this.lines.length && bytes < BATCH_BYTES; i++) {
      const next = this.lines[i]!.bytes;
      batch.push(next);
      bytes += next.length;
    }
    return batch;
  }

  /** `count` bytes were written: the lines they complete leave the buffer. */
  private consume(count: number): void {
    let left = count;
    while (left > 0) {
      const line = this.lines[this.head]!;
      const rest = line.bytes.length - this.written;
      if (left < rest) {
        this.written += left;
        return;
      }
      left -= rest;
      this.shift();
    }
  }

  /**
   * Tries a full stderr again: at the next turn twice (a reader that keeps up empties it in
   * well under a millisecond), then after 1, 2, 4, 8 and at most 10 ms, so that a stopped reader
   * costs a syscall every 10 ms, not a spinning loop.
   */
  private retryLater(): void {
    const tries = this.fullTries++;
    this.retry =
      tries < 2
        ? setImmediate(resumeFallback)
        : setTimeout(resumeFallback, Math.min(MAX_RETRY_MS, 2 ** (tries - 2)));
  }

  private cancelRetry(): void {
    if (this.retry === undefined) return;
    if (this.fullTries <= 2) clearImmediate(this.retry as NodeJS.Immediate);
    else clearTimeout(this.retry as NodeJS.Timeout);
    this.retry = undefined;
  }

  /** Counts time spent writing against this turn's budget; the budget is renewed at its end. */
  private spend(started: number, blocking: boolean): void {
    if (blocking) return;
    this.spentMs += performance.now() - started;
    if (this.turnEnding) return;
    this.turnEnding = true;
    setImmediate(endFallbackTurn);
  }

  /** Queues the line that tells the drops not told yet. */
  private pushReport(): void {
    this.push({ bytes: reportLine(this.unreported), owner: undefined });
    this.unreported = 0;
  }

  private push(line: Line): void {
    this.lines.push(line);
    this.bufferedBytes += line.bytes.length;
  }

  private shift(): void {
    this.bufferedBytes -= this.lines[this.head]!.bytes.length;
    this.lines[this.head++] = undefined;
    this.written = 0;
    if (this.head === this.lines.length) {
      this.lines = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.lines.length) {
      this.lines = this.lines.slice(this.head);
      this.head = 0;
    }
  }

  private drop(owner: DropCount | undefined): void {
    if (owner !== undefined) owner.dropped++;
    this.unreported++;
  }

  /**
   * Node makes a stderr pipe non-blocking only once `process.stderr` is first read: before
   * that, a write to a pipe nobody reads would block the process for good.
   */
  private open(): void {
    if (this.opened) return;
    this.opened = true;
    void process.stderr;
    // At process.exit(), whatever stderr takes without waiting is written rather than lost.
    process.once('exit', () => this.pump(true, 0));
  }
}

/** For `Atomics.wait`: the one way to sleep a synchronous moment without spinning. */
const sleeper = new Int32Array(new SharedArrayBuffer(4));

const fallback = new StderrFallback();

function resumeFallback(): void {
  fallback.resume();
}

function endFallbackTurn(): void {
  fallback.endTurn();
}

function reportLine(dropped: number): Buffer {
  return Buffer.from(`${noticeLine(LOG_MESSAGES.logRecordsDropped, { dropped })}\n`);
}
