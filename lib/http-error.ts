/**
 * Maps any thrown value to an `HttpError` with a status from 400 to 599: an `http-errors` error
 * as it is, anything else as a wrapper that keeps the original as `cause` and exposes nothing.
 * The status is read once, so an error whose `status` getter changes its answer cannot change it.
 */
import createError, { type HttpError } from 'http-errors';
import { readProperty, toError } from './thrown';

export interface MappedError {
  readonly error: HttpError;
  /** The status of the response: read once, an integer from 400 to 599. */
  readonly status: number;
  /** What was thrown, as an Error (the HttpError itself when one was thrown). */
  readonly cause: Error;
  /** True when an `http-errors` error was thrown, as opposed to anything else. */
  readonly fromHttpError: boolean;
}

export function mapThrown(thrown: unknown): MappedError {
  if (isHttpError(thrown)) {
    const status = readProperty(thrown, 'status');
    if (isErrorStatus(status)) return { error: thrown, status, cause: thrown, fromHttpError: true };
  }
  const status = statusOf(thrown) ?? 500;
  const cause = toError(thrown);
  const message = readProperty(cause, 'message');
  const error = createError(status, typeof message === 'string' ? message : '', {
    expose: false,
    cause,
  });
  return { error, status, cause, fromHttpError: false };
}

/** An integer from 400 to 599: the only statuses an error response may have. */
export function isErrorStatus(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 400 && value <= 599;
}

/** `status`, else `statusCode`, when it is an error status (as Express's finalhandler reads them). */
function statusOf(thrown: unknown): number | undefined {
  const status = readProperty(thrown, 'status');
  if (isErrorStatus(status)) return status;
  const statusCode = readProperty(thrown, 'statusCode');
  return isErrorStatus(statusCode) ? statusCode : undefined;
}

function isHttpError(value: unknown): value is HttpError {
  try {
    return createError.isHttpError(value);
  } catch {
    return false;
  }
}
