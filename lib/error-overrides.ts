/**
 * The exception-handler overrides of `httpErrorHandler()`: which one matches an error, and running
 * it so that a throw, a rejection or no answer at all still ends in a response.
 */
import type { Request, Response } from 'express';
import type { HttpError } from 'http-errors';
import type { Logger } from 'winston';
import { settleAfterHeaders } from './after-headers';
import { isErrorStatus, type MappedError } from './http-error';
import { LOG_MESSAGES, safeLog } from './logging';
import { checkFunction, fail, show } from './options';
import type { BackgroundTasks } from './queue';
import { errorFields, isThenable, settle, toError } from './thrown';

/** Which errors an override handles. */
export type OverrideMatch =
  /** A status code from 400 to 599. */
  | number
  /** An Error class, tested with `instanceof` against the mapped HttpError and what was thrown. */
  | (abstract new (...args: never[]) => Error)
  /** A predicate over the mapped HttpError (what was thrown is its `cause` when it was no HttpError). */
  | ((error: HttpError, req: Request) => boolean);

export interface ErrorOverride {
  match: OverrideMatch;
  /** Writes the response (sync or async), and may queue tasks. Notifiers run all the same. */
  handle(error: HttpError, req: Request, res: Response, tasks: BackgroundTasks): unknown;
}

/** One failed request, as the handler and its overrides see it. */
export interface Failure extends MappedError {
  readonly req: Request;
  readonly res: Response;
  readonly tasks: BackgroundTasks;
  readonly logger: Logger;
}

/** An override whose `match` became one test, chosen when the handler was made. */
export interface Override {
  matches(failure: Failure): boolean;
  handle: ErrorOverride['handle'];
}

/** Checks an override given to `httpErrorHandler()` and turns its `match` into a test. */
export function toOverride(override: unknown, i: number): Override {
  const where = 'httpErrorHandler';
  if (override === null || typeof override !== 'object') {
    fail(where, `overrides[${i}]`, 'a { match, handle } object', override);
  }
  const { match, handle } = override as Partial<ErrorOverride>;
  checkFunction(where, `overrides[${i}].handle`, handle);
  const test = matcher(match);
  if (test === undefined) {
    throw new TypeError(
      `${where}(): option "overrides[${i}].match" must be a status from 400 to 599, an Error class or a predicate, got ${show(match)}`,
    );
  }
  return {
    handle: handle!,
    matches(failure) {
      try {
        return test(failure);
      } catch (thrown) {
        logOverrideFailure(failure, 'match threw', thrown);
        return false;
      }
    },
  };
}

/**
 * Lets the override answer. If it throws, rejects, returns without responding, or has not
 * responded after `timeoutMs`, the failure is logged and `fallback` sends the default response.
 */
export function runOverride(
  override: Override,
  failure: Failure,
  timeoutMs: number,
  fallback: () => void,
): void {
  const { res } = failure;
  let timer: NodeJS.Timeout | undefined;
  let settled = false;
  const done = (outcome: 'returned' | 'timed out' | 'threw', thrown?: unknown) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    if (outcome === 'returned' && res.headersSent) return;
    logOverrideFailure(failure, outcome === 'returned' ? 'did not respond' : outcome, thrown);
    if (!res.headersSent || settleAfterHeaders(res) === 'reopened') fallback();
  };
  try {
    const result = override.handle(failure.error, failure.req, res, failure.tasks);
    if (!isThenable(result)) return done('returned');
    timer = setTimeout(done, timeoutMs, 'timed out');
    settle(result).then(
      () => done('returned'),
      (thrown: unknown) => done('threw', thrown),
    );
  } catch (thrown) {
    done('threw', thrown);
  }
}

function logOverrideFailure(failure: Failure, reason: string, thrown: unknown): void {
  safeLog(failure.logger, 'error', LOG_MESSAGES.overrideFailed, {
    reason,
    requestId: failure.tasks.requestId,
    status: failure.status,
    ...(reason.endsWith('threw') && { error: errorFields(toError(thrown)) }),
  });
}

function matcher(match: unknown): ((failure: Failure) => boolean) | undefined {
  if (isErrorStatus(match)) return (failure) => failure.status === match;
  if (isErrorClass(match))
    return ({ error, cause }) => error instanceof match || cause instanceof match;
  if (typeof match === 'function') return ({ error, req }) => Boolean(match(error, req));
  return undefined;
}

/** A class is a function whose prototype is an Error; arrow-function predicates have no prototype. */
function isErrorClass(match: unknown): match is abstract new (...args: never[]) => Error {
  return typeof match === 'function' && (match === Error || match.prototype instanceof Error);
}
