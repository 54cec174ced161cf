/**
 * Writes the default error response: plain text, `nosniff`, the status text unless the error is
 * exposed, and the error's own headers only where they are valid and harmless.
 */
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { Response } from 'express';
import type { HttpError } from 'http-errors';
import statuses from 'statuses';
import { readProperty } from './thrown';

/** Headers an error may not set: they frame or type the body we write, or would set state. */
const PROTECTED_HEADERS = new Set([
  'content-type',
  'content-length',
  'transfer-encoding',
  'content-encoding',
  'content-range',
  'set-cookie',
  'x-content-type-options',
  'content-security-policy',
]);

/**
 * Headers left by the failed response that would misdescribe the error body, or let a cache
 * keep the error as if it were the page (a `Cache-Control: public` set before a throw would let
 * a CDN serve the 500). The error's own `headers` are applied after, so it may set them again.
 */
const STALE_HEADERS = [
  'Content-Encoding',
  'Content-Language',
  'Content-Range',
  'Content-Disposition',
  'Cache-Control',
  'Expires',
  'ETag',
  'Last-Modified',
];

/** The body: the error's message when it is exposed (4xx from http-errors), else the status text. */
export function errorBody(error: HttpError, status: number): string {
  if (status < 500 && readProperty(error, 'expose') === true) {
    const message = readProperty(error, 'message');
    if (typeof message === 'string' && message !== '') return message;
  }
  return statusText(status);
}

export function statusText(status: number): string {
  return statuses.message[status] ?? (status < 500 ? 'Client Error' : 'Server Error');
}

/** The error's headers, split into those safe to send and the names of those skipped. */
export interface ErrorHeaders {
  valid: Array<[string, string | number | string[]]>;
  skipped: string[];
}

/** Keeps each header of an error's `headers` that is valid, of a sendable type, and not protected. */
export function checkErrorHeaders(headers: unknown): ErrorHeaders {
  const checked: ErrorHeaders = { valid: [], skipped: [] };
  if (headers === null || typeof headers !== 'object') return checked;
  let names: string[];
  try {
    names = Object.keys(headers);
  } catch {
    checked.skipped.push('(unreadable headers)');
    return checked;
  }
  for (const name of names) {
    const value = readProperty(headers, name);
    if (isSendable(name, value) && !PROTECTED_HEADERS.has(name.toLowerCase()))
      checked.valid.push([name, value]);
    else checked.skipped.push(name);
  }
  return checked;
}

/**
 * Sends the response. An unread request body needs no draining here: Node discards it once the
 * response has finished (a test sends 8 MB to an error route), and HEAD responses carry no body.
 */
export function sendErrorResponse(
  res: Response,
  status: number,
  body: string,
  headers: ErrorHeaders['valid'],
): void {
  try {
    for (const name of STALE_HEADERS) res.removeHeader(name);
    for (const [name, value] of headers) res.setHeader(name, value);
    res.statusCode = status;
    res.setHeader('Content-Security-Policy', "default-src 'none'");
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(body);
  } catch {
    res.destroy(); // nothing valid can be sent any more; a cut connection is the honest answer
  }
}

/**
 * Ends a response that failed after its headers were sent. A half-written body cannot be
 * completed or replaced, so the connection is destroyed: the client sees a cut response, never
 * a truncated one that looks whole. The destroy waits a turn, because Node holds a response's
 * first writes corked until the next tick and a destroy now would discard them: the client
 * would see no status at all. A response already ended is left to finish.
 */
export function cutShort(res: Response): void {
  if (!res.writableEnded) setImmediate(destroy, res);
}

function destroy(res: Response): void {
  res.destroy();
}

function isSendable(name: string, value: unknown): value is string | number | string[] {
  try {
    const items = Array.isArray(value) ? value : [value];
    const valid =
      (typeof value === 'number' && Number.isFinite(value)) ||
      (items.length > 0 && items.every((item) => typeof item === 'string'));
    if (!valid) return false;
    validateHeaderName(name);
    for (const item of items) validateHeaderValue(name, String(item));
    return true;
  } catch {
    return false; // a hostile value (a revoked proxy, say) is skipped like any invalid one
  }
}
