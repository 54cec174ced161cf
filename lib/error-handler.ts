/**
 * `httpErrorHandler()`: the terminal error middleware. It maps whatever was thrown to an
 * `HttpError`, logs it, queues the notifiers as background tasks of the error response, lets the
 * first matching override answer, and otherwise sends a plain-text response that leaks nothing.
 */
import type { ErrorRequestHandler, Request } from 'express';
import type { HttpError } from 'http-errors';
import type { Logger } from 'winston';
import { settleAfterHeaders } from './after-headers';
import { checkErrorHeaders, errorBody, sendErrorResponse } from './error-response';
import {
  runOverride,
  toOverride,
  type ErrorOverride,
  type Failure,
  type Override,
} from './error-overrides';
import { mapThrown } from './http-error';
import { LOG_MESSAGES, safeLog, useLogger, type LogLevel } from './logging';
import { backgroundTasks, queueOf, runnerOf, withControls, type TaskControls } from './middleware';
import { MAX_TIMER_MS, checkFunction, checkInteger, checkOptionsObject, fail } from './options';
import { urlOf } from './request-queue';
import type { TaskRunner } from './runner';
import { errorFields, readProperty } from './thrown';
import type { TaskContext } from './types';

/** A notifier: queued as a background task of every error response. */
export type Notifier = (error: HttpError, req: Request, ctx: TaskContext) => unknown;

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

export function httpErrorHandler(options?: HttpErrorHandlerOptions): HttpErrorHandler {
  const { logger, notifiers, overrides, runner, clientErrorLogLevel, overrideTimeoutMs } =
    resolveHandlerOptions(options);

  // Four declared parameters: Express recognises an error middleware by `length === 4`.
  const handler: ErrorRequestHandler = function httpErrorHandler(thrown, req, res, _next) {
    const tasks = queueOf(runner, req, res);
    const failure: Failure = { ...mapThrown(thrown), req, res, tasks, logger };
    const { error, status, cause, fromHttpError } = failure;
    const level = status >= 500 || !fromHttpError ? 'error' : clientErrorLogLevel;
    safeLog(logger, level, LOG_MESSAGES.requestFailed, {
      status,
      requestId: tasks.requestId,
      method: req.method,
      url: urlOf(req),
      error: errorFields(cause, level === 'error'),
    });
    for (const { name, notify } of notifiers)
      tasks.add({ name, run: (ctx) => notify(error, req, ctx) });
    // Express's own final handler would close the connection of a response whose head was
    // set, but it reads `status`, `stack` and `toString` of the raw thrown value, and a hostile
    // one crashes the process there: so such a response is settled here, and Express never sees it.
    if (res.headersSent && settleAfterHeaders(res) !== 'reopened') return;
    const override = overrides.find((candidate) => candidate.matches(failure));
    if (override === undefined) sendDefault(failure);
    else runOverride(override, failure, overrideTimeoutMs, () => sendDefault(failure));
  };
  return withControls(handler, runner);
}

/** Sends the default response, with one line for the error's headers that were not sent, if any. */
function sendDefault({ res, error, status, tasks, logger }: Failure): void {
  const headers = checkErrorHeaders(readProperty(error, 'headers'));
  if (headers.skipped > 0) {
    safeLog(logger, 'warn', LOG_MESSAGES.headerSkipped, {
      requestId: tasks.requestId,
      count: headers.skipped,
      tooLarge: headers.tooLarge,
      headers: headers.names,
    });
  }
  sendErrorResponse(res, status, errorBody(error, status), headers.valid);
}

interface HandlerSettings {
  logger: Logger;
  /** Each notifier with its task name, read once: a `name` getter is not trusted per request. */
  notifiers: Array<{ name: string; notify: Notifier }>;
  overrides: Override[];
  runner: TaskRunner;
  clientErrorLogLevel: LogLevel;
  overrideTimeoutMs: number;
}

const LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

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
  const givenLogger = given.logger === undefined ? undefined : useLogger(where, given.logger);
  const notify =
    given.notify === undefined ? [] : Array.isArray(given.notify) ? given.notify : [given.notify];
  const notifiers = notify.map((notifier, i) => {
    checkFunction(where, `notify[${i}]`, notifier);
    const name = readProperty(notifier, 'name');
    return { name: typeof name === 'string' && name !== '' ? name : 'notify', notify: notifier };
  });
  if (given.overrides !== undefined && !Array.isArray(given.overrides)) {
    fail(where, 'overrides', 'an array of { match, handle }', given.overrides);
  }
  const overrides = (given.overrides ?? []).map(toOverride);
  let runner: TaskRunner | undefined;
  if (given.backgroundTasks !== undefined) {
    runner = runnerOf(given.backgroundTasks);
    if (runner === undefined) {
      fail(
        where,
        'backgroundTasks',
        'a middleware made by backgroundTasks()',
        given.backgroundTasks,
      );
    }
  }
  runner ??= runnerOf(backgroundTasks({ logger: givenLogger }))!;
  const logger = givenLogger ?? runner.logger;
  const level = given.clientErrorLogLevel ?? 'info';
  if (!LEVELS.includes(level))
    fail(where, 'clientErrorLogLevel', `one of ${LEVELS.join(', ')}`, level);
  return {
    logger,
    notifiers,
    overrides,
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
