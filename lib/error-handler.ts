/**
 * `httpErrorHandler()`: the terminal error middleware. It maps whatever was thrown to an
 * `HttpError`, logs it, queues the notifiers as background tasks of the error response, lets the
 * first matching override answer, and otherwise sends a plain-text response that leaks nothing.
 */
import type { ErrorRequestHandler, Request, Response } from 'express';
import type { HttpError } from 'http-errors';
import type { Logger } from 'winston';
import { checkErrorHeaders, errorBody, sendErrorResponse } from './error-response';
import { toHttpError } from './http-error';
import { LOG_MESSAGES, isThenable, safeLog, type LogLevel } from './logging';
import { backgroundTasks, queueOf, runnerOf, withControls, type TaskControls } from './middleware';
import {
  MAX_TIMER_MS,
  checkFunction,
  checkInteger,
  checkLogger,
  checkOptionsObject,
  fail,
  show,
} from './options';
import type { BackgroundTasks } from './queue';
import { errorFields, readProperty, toError } from './thrown';
import type { TaskContext } from './types';

/** A notifier: queued as a background task of every error response. */
export type Notifier = (error: HttpError, req: Request, ctx: TaskContext) => unknown;

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

export interface HttpErrorHandlerOptions {
  /** Where errors are logged. Default: the `backgroundTasks` option's logger, else JSON lines on the console. */
  logger?: Logger;
  /** One notifier or several, each queued as a background task of every error response. Default: none. */
  notify?: Notifier | Notifier[];
  /** Exception-handler overrides; the first match answers. Default: none. */
  overrides?: ErrorOverride[];
  /**
   * The middleware that runs the notifiers of responses it did not give a queue to (an error raised
   * before it was mounted). Default: a private `backgroundTasks()` with this logger, reached through
   * the handler's own `idle()`, `stats()` and `drain()`.
   */
  backgroundTasks?: TaskControls;
  /** The level at which 4xx HttpErrors are logged (5xx and non-HttpErrors are logged at `error`). Default: `'info'`. */
  clientErrorLogLevel?: LogLevel;
  /** How long an async override may take to respond before the default response is sent. Default: `5000`. */
  overrideTimeoutMs?: number;
}

export type HttpErrorHandler = ErrorRequestHandler & TaskControls;

const LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

export function httpErrorHandler(options?: HttpErrorHandlerOptions): HttpErrorHandler {
  const settings = resolveHandlerOptions(options);
  const { logger, notifiers, overrides, clientErrorLogLevel, overrideTimeoutMs } = settings;
  const runner = settings.runner;

  // Four declared parameters: Express recognises an error middleware by `length === 4`.
  const handler: ErrorRequestHandler = function httpErrorHandler(thrown, req, res, next) {
    const error = toHttpError(thrown);
    const status = error.status;
    const tasks = queueOf(runner, req, res);
    const cause = error === thrown ? error : toError(thrown);
    const fromHttpError = cause === error;
    const level = status >= 500 || !fromHttpError ? 'error' : clientErrorLogLevel;
    safeLog(logger, level, LOG_MESSAGES.requestFailed, {
      status,
      requestId: tasks.requestId,
      method: req.method,
      url: req.originalUrl ?? req.url,
      error: errorFields(cause, level === 'error'),
    });
    for (const notifier of notifiers) {
      tasks.add({ name: notifier.name || 'notify', run: (ctx) => notifier(error, req, ctx) });
    }
    if (res.headersSent) {
      next(thrown); // Express closes the connection: a second response cannot be written
      return;
    }
    const override = overrides.find((candidate) =>
      candidate.matches(error, cause, req, tasks.requestId),
    );
    if (override === undefined) sendDefault(req, res, error, logger);
    else runOverride(override, error, req, res, tasks, { logger, overrideTimeoutMs });
  };
  return withControls(handler, runner);
}

/** Sends the default response, logging any of the error's headers that were not safe to send. */
function sendDefault(req: Request, res: Response, error: HttpError, logger: Logger): void {
  const headers = checkErrorHeaders(readProperty(error, 'headers'));
  for (const header of headers.skipped) {
    safeLog(logger, 'warn', LOG_MESSAGES.headerSkipped, {
      header,
      requestId: res.locals.requestId,
    });
  }
  sendErrorResponse(req, res, error.status, errorBody(error, error.status), headers.valid);
}

interface OverrideSettings {
  logger: Logger;
  overrideTimeoutMs: number;
}

/** Lets an override answer; a throw, a rejection or no answer falls back to the default response. */
function runOverride(
  override: Override,
  error: HttpError,
  req: Request,
  res: Response,
  tasks: BackgroundTasks,
  { logger, overrideTimeoutMs }: OverrideSettings,
): void {
  let settled = false;
  const done = (thrown: unknown, failed: boolean) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    if (!failed && res.headersSent) return;
    const reason = failed ? 'threw' : thrown === TIMED_OUT ? 'timed out' : 'did not respond';
    safeLog(logger, 'error', LOG_MESSAGES.overrideFailed, {
      reason,
      requestId: tasks.requestId,
      status: error.status,
      ...(failed && { error: errorFields(toError(thrown)) }),
    });
    if (!res.headersSent) sendDefault(req, res, error, logger);
    else if (!res.writableEnded) res.destroy(); // a half-written response cannot be completed
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = override.handle(error, req, res, tasks);
    if (!isThenable(result)) return done(undefined, false);
    timer = setTimeout(done, overrideTimeoutMs, TIMED_OUT, false);
    Promise.resolve(result).then(
      () => done(undefined, false),
      (thrown: unknown) => done(thrown, true),
    );
  } catch (thrown) {
    done(thrown, true);
  }
}

const TIMED_OUT = Symbol('timed out');

/** An override with its `match` turned into one test, decided once when the handler is made. */
interface Override extends ErrorOverride {
  matches(error: HttpError, cause: Error, req: Request, requestId: string): boolean;
}

function toOverride(override: ErrorOverride, logger: Logger): Override {
  const { match, handle } = override;
  const test = (error: HttpError, cause: Error, req: Request): boolean => {
    if (typeof match === 'number') return error.status === match;
    if (isErrorClass(match)) return error instanceof match || cause instanceof match;
    return Boolean((match as (error: HttpError, req: Request) => boolean)(error, req));
  };
  return {
    match,
    handle,
    matches(error, cause, req, requestId) {
      try {
        return test(error, cause, req);
      } catch (thrown) {
        safeLog(logger, 'error', LOG_MESSAGES.overrideFailed, {
          reason: 'match threw',
          requestId,
          error: errorFields(toError(thrown)),
        });
        return false;
      }
    },
  };
}

/** A class is a function whose prototype is an Error; arrow-function predicates have no prototype. */
function isErrorClass(match: unknown): match is abstract new (...args: never[]) => Error {
  return typeof match === 'function' && (match === Error || match.prototype instanceof Error);
}

interface HandlerSettings {
  logger: Logger;
  notifiers: Notifier[];
  overrides: Override[];
  runner: NonNullable<ReturnType<typeof runnerOf>>;
  clientErrorLogLevel: LogLevel;
  overrideTimeoutMs: number;
}

function resolveHandlerOptions(options: HttpErrorHandlerOptions | undefined): HandlerSettings {
  const where = 'httpErrorHandler';
  const given = checkOptionsObject(where, options, [
    'logger',
    'notify',
    'overrides',
    'backgroundTasks',
    'clientErrorLogLevel',
    'overrideTimeoutMs',
  ]);
  if (given.logger !== undefined) checkLogger(where, given.logger);
  const notifiers =
    given.notify === undefined
      ? []
      : Array.isArray(given.notify)
        ? [...given.notify]
        : [given.notify];
  notifiers.forEach((notifier, i) => checkFunction(where, `notify[${i}]`, notifier));
  if (given.overrides !== undefined && !Array.isArray(given.overrides)) {
    fail(where, 'overrides', 'an array of { match, handle }', given.overrides);
  }
  const overrides = [...(given.overrides ?? [])];
  overrides.forEach(checkOverride);
  let runner = undefined;
  if (given.backgroundTasks !== undefined) {
    runner = runnerOf(given.backgroundTasks);
    if (runner === undefined)
      fail(
        where,
        'backgroundTasks',
        'a middleware made by backgroundTasks()',
        given.backgroundTasks,
      );
  }
  const logger = given.logger ?? runner?.logger;
  runner ??= runnerOf(backgroundTasks({ logger }))!;
  const level = given.clientErrorLogLevel ?? 'info';
  if (!LEVELS.includes(level))
    fail(where, 'clientErrorLogLevel', `one of ${LEVELS.join(', ')}`, level);
  return {
    logger: logger ?? runner.logger,
    notifiers,
    overrides: overrides.map((override) => toOverride(override, logger ?? runner.logger)),
    runner,
    clientErrorLogLevel: level,
    overrideTimeoutMs: checkInteger(
      where,
      'overrideTimeoutMs',
      given.overrideTimeoutMs,
      5_000,
      1,
      MAX_TIMER_MS,
    ),
  };
}

function checkOverride(override: unknown, i: number): void {
  const where = 'httpErrorHandler';
  if (override === null || typeof override !== 'object')
    fail(where, `overrides[${i}]`, 'a { match, handle } object', override);
  const { match, handle } = override as Partial<ErrorOverride>;
  checkFunction(where, `overrides[${i}].handle`, handle);
  const validMatch =
    typeof match === 'function' ||
    (typeof match === 'number' && Number.isInteger(match) && match >= 400 && match <= 599);
  if (!validMatch) {
    throw new TypeError(
      `${where}(): option "overrides[${i}].match" must be a status from 400 to 599, an Error class or a predicate, got ${show(match)}`,
    );
  }
}
