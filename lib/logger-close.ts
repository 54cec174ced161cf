/**
 * `closeLogger()`'s sequence, on a logger's guard: wait until winston has handed every record to
 * the transports and each has acknowledged what it was given; end the logger; wait for each
 * transport to finish, and for stdout and stderr (a Console transport writes to them) to hand on
 * what they hold. Past the waiting part of the time, give what is still held to stderr; then
 * write stderr until the deadline, the one place the library waits for its reader.
 */
import { performance } from 'node:perf_hooks';
import { inTime } from './in-time';
import { noticeLine } from './log-format';
import type { LoggerGuard } from './logger-guard';
import { LOG_MESSAGES } from './log-messages';
import { flushStderr, giveUpOn, writeToStderr } from './stderr';
import { afterWrites } from './stream-backlog';
import type { TransportGuard } from './transport-guard';

/** Closes the guard's logger within `timeoutMs`: true when every record reached its transport and stderr is written. */
export async function closeGuarded(guard: LoggerGuard, timeoutMs: number): Promise<boolean> {
  guard.adoptTransports();
  guard.closed = true;
  const deadline = performance.now() + timeoutMs;
  // The last part of the time, at most a second, is kept for giving stderr what was not taken.
  const reserve = Math.min(1_000, timeoutMs / 4);
  const waitUntil = deadline - reserve;
  const finished = await endWhenSettled(guard, waitUntil);
  if (!finished) {
    // Formatting the records held takes time too: past half the reserve, they are counted instead.
    guard.spillDeadline = waitUntil + reserve / 2;
    const { spilled, inDoubt } = guard.spillHeld();
    const fields = { timeoutMs, spilled, ...(inDoubt > 0 && { inDoubt }) };
    writeToStderr(noticeLine(LOG_MESSAGES.loggerCloseTimedOut, fields));
  }
  const flushed = flushStderr(deadline);
  if (!flushed) giveUpOn(guard);
  return finished && flushed;
}

/** Ends the logger once it has handed everything over, and waits for its transports to finish, until `until`. */
async function endWhenSettled(guard: LoggerGuard, until: number): Promise<boolean> {
  if (!(await guard.settled(until))) return false;
  guard.spillFromDead();
  const live = guard.liveTransports();
  // winston's own 'finish' comes before its transports have written (winston issue #1250).
  const finished = Promise.all(live.map(whenFinished))
    // A transport may fail for good while it finishes: what it still held goes to stderr.
    .then(() => guard.spillFromDead())
    .then(() => guard.acknowledgedAll(live))
    .then(() => Promise.all([whenDrained(process.stdout), whenDrained(process.stderr)]));
  guard.endedByClose = true;
  guard.logger.end();
  return inTime(finished, Math.max(0, until - performance.now()));
}

function whenDrained(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => afterWrites(stream, resolve));
}

/** Resolves once a transport has finished (or failed, or closed): nothing more will be written. */
function whenFinished(guard: TransportGuard): Promise<void> {
  const stream = guard.transport as unknown as NodeJS.EventEmitter & {
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
