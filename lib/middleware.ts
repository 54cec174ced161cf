/**
 * `backgroundTasks()`: the request middleware that gives each request its task queue at
 * `res.locals.backgroundTasks` and its id at `res.locals.requestId`, and exposes the runner's
 * `idle()`, `stats()` and `drain()`.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'winston';
import { countBodyBytes } from './after-headers';
import { resolveOptions, type BackgroundTasksOptions } from './options';
import { BackgroundTasks } from './queue';
import { requestIdOf } from './request-id';
import { TaskRunner, type DrainOptions } from './runner';
import { MAX_NAME_CHARS, clip } from './thrown';
import type { BackgroundTasksStats, DrainResult } from './types';

/** What `idle()`, `stats()` and `drain()` are called on: the middleware, or the error handler's own runner. */
export interface TaskControls {
  /** Resolves once no task is pending or running (`p-queue`'s `onIdle()`): what tests await. */
  idle(): Promise<void>;
  /** A snapshot of the counters. */
  stats(): BackgroundTasksStats;
  /** For shutdown: waits for every task, at most `timeoutMs`, then abandons and logs the rest. */
  drain(options?: DrainOptions): Promise<DrainResult>;
}

export type BackgroundTasksMiddleware = RequestHandler &
  TaskControls & {
    /**
     * The winston logger this middleware logs to: the one given, or the default one (JSON lines
     * on stdout), so that a shutdown can `closeLogger(bg.logger)` whichever it is.
     */
    readonly logger: Logger;
  };

/** Creates the middleware. Options are checked here: a bad one throws a TypeError at once. */
export function backgroundTasks(options?: BackgroundTasksOptions): BackgroundTasksMiddleware {
  const runner = new TaskRunner(resolveOptions(options));
  const middleware: RequestHandler = function backgroundTasks(req, res, next) {
    queueOf(runner, req, res);
    next();
  };
  return Object.defineProperty(withControls(middleware, runner), 'logger', {
    value: runner.logger,
    enumerable: true,
  }) as BackgroundTasksMiddleware;
}

/**
 * The request's queue, made and attached at `res.locals.backgroundTasks` on the first call, with
 * the body's byte count the error handler needs after headers (after-headers.ts). Nothing else
 * is done per request: the response is only watched once a task is added. Later
 * calls (the error handler's) find it through the library's own reference, never by reading
 * `res.locals` back: an app may overwrite it (`Object.assign(res.locals, req.query)`).
 */
export function queueOf(runner: TaskRunner, req: Request, res: Response): BackgroundTasks {
  const existing = (res as OwnedResponse)[QUEUE];
  if (existing !== undefined) return existing;
  const locals = localsOf(res);
  if (typeof locals.requestId !== 'string') locals.requestId = requestIdOf(req);
  // An id set by an earlier middleware may be of any length: logs and spans carry it clipped.
  const requestId = clip(locals.requestId as string, MAX_NAME_CHARS);
  const queue = new BackgroundTasks(runner, req, res, requestId);
  (res as OwnedResponse)[QUEUE] = queue;
  countBodyBytes(res);
  // Set only where nothing is: a value the app put there is the app's.
  if (locals.backgroundTasks === undefined) locals.backgroundTasks = queue;
  return queue;
}

/** @internal The runner behind a middleware made by `backgroundTasks()`. */
export function runnerOf(middleware: TaskControls): TaskRunner | undefined {
  return runners.get(middleware);
}

export function withControls<T extends object>(target: T, runner: TaskRunner): T & TaskControls {
  const controlled = Object.assign(target, {
    idle: () => runner.idle(),
    stats: () => runner.stats(),
    drain: (options?: DrainOptions) => runner.drain(options),
  });
  runners.set(controlled, runner);
  return controlled;
}

const runners = new WeakMap<TaskControls, TaskRunner>();
/**
 * Each response's queue, as made here: the one place it is looked up. A symbol on the response
 * rather than a WeakMap: a WeakMap entry per request cost about 150 ns (its keys die young, and
 * each is an ephemeron the GC must trace), a property about nothing.
 */
const QUEUE = Symbol('express-background-tasks.queue');
type OwnedResponse = Response & { [QUEUE]?: BackgroundTasks };

/** `res.locals`, or a stand-in where an app replaced it with something that holds no field. */
function localsOf(res: Response): Record<string, unknown> {
  const locals: unknown = res.locals;
  return typeof locals === 'object' && locals !== null ? (locals as Record<string, unknown>) : {};
}
