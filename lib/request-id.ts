/**
 * The request id that ties a request's log lines and background tasks together: the client's
 * `X-Request-Id` when it is a short token of safe characters, else a fresh UUID.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Letters, digits and `-_.:`, 1 to 64 of them: safe in logs, headers and file names. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
}
