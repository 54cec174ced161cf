/**
 * What a winston logger or transport holds and has not handed on yet, read from the state of its
 * stream (winston 3's streams are readable-stream 3's): how many records wait, and which, so
 * that records a stuck or failed stream holds can still reach stderr; and when a Node stream
 * (stdout, stderr) has handed on what it was given.
 */

interface StreamState {
  writableLength?: number;
  readableLength?: number;
  _writableState?: {
    ending?: boolean;
    getBuffer?(): Array<{ chunk: unknown }>;
  };
  _readableState?: { buffer?: { head?: BufferEntry | null }; pipes?: unknown };
  _transformState?: { writechunk?: unknown; writecb?: unknown };
}

interface BufferEntry {
  data: unknown;
  next: BufferEntry | null;
}

/** Records the stream holds: taken by `write()` and not yet handed on. */
export function waitingOn(stream: object): number {
  const state = stream as StreamState;
  return (state.writableLength ?? 0) + (state.readableLength ?? 0);
}

/** The stream was ended (`end()`): a write now would fail with "write after end". */
export function isEnded(stream: object): boolean {
  return (stream as StreamState)._writableState?.ending === true;
}

/**
 * A readable stream (a logger) has a reader piped to it (a transport). readable-stream 3 keeps
 * `null`, one stream, or an array; a stream of unknown make is taken to have one.
 */
export function hasReaders(stream: object): boolean {
  const state = (stream as StreamState)._readableState;
  if (state === undefined || !('pipes' in state)) return true;
  const pipes = state.pipes;
  return Array.isArray(pipes) ? pipes.length > 0 : pipes != null;
}

/**
 * The records written to the stream and not yet processed (for a logger: not yet formatted),
 * oldest first, including the one a transform stream is holding until its reader has room.
 */
export function heldWrites(stream: object): unknown[] {
  const state = stream as StreamState;
  const held: unknown[] = [];
  const transform = state._transformState;
  if (transform?.writecb && transform.writechunk != null) held.push(transform.writechunk);
  for (const entry of safely(() => state._writableState?.getBuffer?.()) ?? [])
    held.push(entry.chunk);
  return held;
}

/** The records a readable stream (a logger) has formatted and not yet handed to its transports. */
export function heldReads(stream: object): unknown[] {
  const held: unknown[] = [];
  let entry = (stream as StreamState)._readableState?.buffer?.head;
  for (; entry != null; entry = entry.next) held.push(entry.data);
  return held;
}

function safely<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/**
 * Calls `then` once everything written to `stream` so far has been handed on: at once when
 * nothing waits; else after an empty write, which calls back after every write before it
 * ('drain' comes only after a write that was refused, so it may never come).
 */
export function afterWrites(
  stream: NodeJS.WritableStream & { writableLength?: number; destroyed?: boolean },
  then: () => void,
): void {
  if (!(stream.writableLength! > 0) || stream.destroyed === true) return then();
  stream.write('', () => then());
}
