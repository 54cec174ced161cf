/**
 * A response that failed after its head was set: what can still be done honestly. Three cases:
 * - no byte of it has left it (`writeHead()` alone, or a `HEAD` response, whose head Node holds
 *   until the end), and nothing else has hooked its head or its end (a compression middleware
 *   would have wrapped `end` in a gzip stream no reopening can undo): it is reopened, so that a
 *   proper error response can be sent;
 * - its framing is complete (every byte its `Content-Length` announced, or no body to send and
 *   its head on its way): it is ended as it stands, and the connection goes on to serve the next
 *   request (destroying it would lose a request the client has already sent on it, keep-alive);
 * - otherwise (a body short of its length, chunked, or not counted): the connection is cut, so
 *   that the client sees a cut response, never a truncated one that looks whole (but for a body
 *   delimited by the close, HTTP/1.0's, which no client can tell from a whole one).
 * The body's bytes are counted by a `write` the middleware puts on the prototype of the app's
 * responses (`countBodyBytes`); `end()` needs no count: an ended response is left to finish.
 */
import type { Socket } from 'node:net';
import type { Response } from 'express';

/** What was done with a response that failed after its head was set. */
export type AfterHeaders = 'reopened' | 'ended' | 'cut';

/**
 * Counts the bytes of body written to responses like `res` from now on. The counting `write` is
 * put once on the prototype Express gives every response of the app (`app.response`), not on
 * each response: an own `write` per response cost the request about 1.5% (V8 then sees two
 * shapes of response wherever `write` is looked up), where a prototype's is read as before.
 */
export function countBodyBytes(res: Response): void {
  if ((res as CountedResponse)[WRITE] !== undefined) return;
  const prototype = Object.getPrototypeOf(res) as object | null;
  if (prototype === null || prototype === Object.prototype) return;
  // The prototype's own `write`, not the response's: a middleware may have wrapped this one.
  const write = (prototype as { write?: unknown }).write;
  if (typeof write !== 'function') return;
  Object.defineProperty(prototype, WRITE, { value: write, configurable: true });
  Object.defineProperty(prototype, 'write', {
    value: countingWrite,
    configurable: true,
    writable: true,
  });
}

/**
 * Reopens the response if nothing of it has left it, ends it if its framing is complete, and
 * cuts it otherwise (see the file's comment). Never throws.
 */
export function settleAfterHeaders(res: Response): AfterHeaders {
  if (res.writableEnded) return 'ended'; // ended already: left to finish
  const node = res as NodeResponse;
  if (node._headerSent !== true && heldBy(node) === 0 && !hooked(node) && reopen(node))
    return 'reopened';
  if (framingComplete(node)) {
    try {
      res.end();
      return 'ended';
    } catch {
      // an `end` of the app's own that throws, Node's strictContentLength: cut instead
    }
  }
  // The cut waits a turn: Node holds a response's first writes corked until the next tick, and
  // a destroy now would discard them, so that the client would see no status at all.
  setImmediate(cut, res);
  return 'cut';
}

const BODY_BYTES = Symbol('express-background-tasks.bodyBytes');
const WRITE = Symbol('express-background-tasks.write');

type CountedResponse = Response & { [BODY_BYTES]?: number; [WRITE]?: Response['write'] };

/** The fields of Node's `ServerResponse` read here; none is documented, all date from Node 0.x. */
type NodeResponse = Response & {
  /** The head as built by `writeHead()`, or null. */
  _header?: string | null;
  /** True once the head was handed to the socket (or to `outputData`, to be). */
  _headerSent?: boolean;
  /** False for `HEAD`, 204 and 304: Node writes no body. */
  _hasBody?: boolean;
  /** The head's `Content-Length`, as Node read it. */
  _contentLength?: number | null;
  chunkedEncoding?: boolean;
  statusMessage: string;
};

/**
 * Counts only what can make a framing complete: a body of announced length (`_contentLength` is
 * known once the first write has built the head). Fixed parameters: no array per write.
 */
function countingWrite(
  this: CountedResponse & NodeResponse,
  chunk: unknown,
  encoding?: unknown,
  callback?: unknown,
): boolean {
  const written = (this[WRITE] as (...args: unknown[]) => boolean).call(
    this,
    chunk,
    encoding,
    callback,
  );
  if (typeof this._contentLength !== 'number' || this.chunkedEncoding === true) return written;
  const bytes =
    typeof chunk === 'string'
      ? Buffer.byteLength(
          chunk,
          typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8',
        )
      : ArrayBuffer.isView(chunk)
        ? chunk.byteLength
        : 0;
  this[BODY_BYTES] = (this[BODY_BYTES] ?? 0) + bytes;
  return written;
}

/**
 * Bytes the response holds and has not handed to its socket: Node 24 keeps a response's first
 * chunks, head included, in a buffer of its own until the next tick (`_headerSent` still false);
 * older versions hand them on at once, or keep them in `outputData` while another response has
 * the socket. `writableLength` counts those and the socket's.
 */
function heldBy(res: NodeResponse): number {
  return (res.writableLength ?? 0) - (res.socket?.writableLength ?? 0);
}

/** Something of the app's wraps the head or the end (compression, on-headers): not reopened. */
function hooked(res: NodeResponse): boolean {
  return Object.hasOwn(res, 'writeHead') || Object.hasOwn(res, 'end');
}

/**
 * Forgets a head that never left, so that `writeHead()` may be called again; false if Node's
 * fields are not as expected (another Node, another server), and it cannot be done safely.
 */
function reopen(res: NodeResponse): boolean {
  if (typeof res._header !== 'string' || res.getHeader === undefined) return false;
  res._header = null;
  res._contentLength = null;
  res.chunkedEncoding = false;
  // writeHead() keeps the status message it was given or chose ("OK"), and a 204 or 304 had no body.
  res.statusMessage = undefined as unknown as string;
  res._hasBody = res.req.method !== 'HEAD';
  (res as CountedResponse)[BODY_BYTES] = 0;
  return !res.headersSent;
}

/** The head is out, or on its way, and so is every byte of body it announced. */
function framingComplete(res: NodeResponse): boolean {
  if (res._hasBody === false) return true;
  const length = res._contentLength;
  // Never counted (no write since the counting began): no byte, which only a length of 0 matches.
  const written = (res as CountedResponse)[BODY_BYTES] ?? 0;
  return res.chunkedEncoding !== true && typeof length === 'number' && written === length;
}

/**
 * Cuts the connection. A response still waiting for its socket (pipelined behind another) has
 * its socket cut when it gets one: Node 24's `destroy()` of a response without a socket only
 * marks it, and the connection would hang.
 */
function cut(res: Response): void {
  if (res.socket === null) res.once('socket', (socket: Socket) => socket.destroy());
  else res.destroy();
}
