/**
 * The last resort for a log record that no logger can take: one JSON line written to stderr
 * synchronously. `process.stderr` is asynchronous when it is a pipe (as under Docker or systemd):
 * it would buffer without bound behind a slow reader, and `process.exit()` would drop what it
 * holds. A synchronous write does neither: it waits for the reader instead.
 */
import { writeSync } from 'node:fs';

/** How long one line may wait for a full pipe to drain before stderr is given up on. */
const MAX_WAIT_MS = 1_000;

/** Writes `record` as one JSON line to stderr; never throws. */
export function writeRecordToStderr(record: object): void {
  if (Date.now() < quietUntil) return;
  try {
    writeFully(2, Buffer.from(`${JSON.stringify(record)}\n`));
  } catch {
    // stderr is closed or nobody reads it: nowhere is left to say it. Skip the writes that
    // cannot arrive for a while, rather than wait a second for each, then try again.
    quietUntil = Date.now() + QUIET_MS;
  }
}

/** How long stderr is left alone after a write to it failed. */
const QUIET_MS = 10_000;
let quietUntil = 0;
/** For `Atomics.wait`: the one way to sleep a synchronous moment without spinning. */
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `buffer`. Node makes a stderr pipe non-blocking, so a full pipe answers EAGAIN:
 * then this waits a millisecond and tries again, for at most `MAX_WAIT_MS` without progress.
 */
function writeFully(fd: number, buffer: Buffer): void {
  let offset = 0;
  let waitedMs = 0;
  while (offset < buffer.length) {
    try {
      offset += writeSync(fd, buffer, offset);
      waitedMs = 0;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN' || waitedMs >= MAX_WAIT_MS)
        throw error;
      Atomics.wait(sleeper, 0, 0, 1);
      waitedMs++;
    }
  }
}
