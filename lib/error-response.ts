/**
 * Writes the default error response: plain text, `nosniff`, the status text unless the error is
 * exposed, and the error's own headers only where they are valid and harmless.
 */
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { Response } from 'express';
import type { HttpError } from 'http-errors';
import statuses from 'statuses';
import { MAX_NAME_CHARS, clip, readProperty } from './thrown';

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
  // A reopened head given `Transfer-Encoding: chunked` would frame the error body twice over.
  'Transfer-Encoding',
  'Trailer',
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

/** The most bytes (names and values) of an error's own headers sent with its response. */
export const MAX_ERROR_HEADER_BYTES = 8_192;
/** The most skipped header names the one line about them lists. */
export const MAX_SKIPPED_NAMES_LOGGED = 10;

/** The error's headers, split into those safe to send and an account of those skipped. */
export interface ErrorHeaders {
  valid: Array<[string, string | number | string[]]>;
  /** How many were skipped, for any reason. */
  skipped: number;
  /** Of those, how many were valid but would have taken the total past `MAX_ERROR_HEADER_BYTES`. */
  tooLarge: number;
  /** The first `MAX_SKIPPED_NAMES_LOGGED` names skipped, each clipped to `MAX_NAME_CHARS`. */
  names: string[];
}

/**
 * Keeps each header of an error's `headers` that is valid, of a sendable type, not protected,
 * and fits within `MAX_ERROR_HEADER_BYTES` with those kept before it (a header larger than a
 * client takes, or 10,000 of them, would make the error response itself unreadable).
 */
export function checkErrorHeaders(headers: unknown): ErrorHeaders {
  const checked: ErrorHeaders = { valid: [], skipped: 0, tooLarge: 0, names: [] };
  if (headers === null || typeof headers !== 'object') return checked;
  let names: string[];
  try {
    names = Object.keys(headers);
  } catch {
    skip(checked, '(unreadable headers)');
    return checked;
  }
  let bytes = 0;
  for (const name of names) {
    const value = readProperty(headers, name);
    if (!isSendable(name, value) || PROTECTED_HEADERS.has(name.toLowerCase())) {
      skip(checked, name);
      continue;
    }
    const size = headerBytes(name, value);
    if (bytes + size > MAX_ERROR_HEADER_BYTES) {
      checked.tooLarge++;
      skip(checked, name);
      continue;
    }
    bytes += size;
    checked.valid.push([name, value]);
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

function skip(checked: ErrorHeaders, name: string): void {
  checked.skipped++;
  if (checked.names.length < MAX_SKIPPED_NAMES_LOGGED)
    checked.names.push(clip(name, MAX_NAME_CHARS));
}

/** A header's bytes on the wire: Node sends its name and each value as `name: value\r\n`, one byte a character. */
function headerBytes(name: string, value: string | number | string[]): number {
  const values = Array.isArray(value) ? value : [String(value)];
  let bytes = 0;
  for (const item of values) bytes += name.length + item.length + 4;
  return bytes;
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
