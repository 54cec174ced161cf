/**
 * Builds the apps the tests drive: one per Express major version, with a capturing logger, the
 * task middleware first and the error handler last.
 */
import express5 from 'express';
import express4 from 'express4';
import type { Express, RequestHandler } from 'express';
import {
  backgroundTasks,
  httpErrorHandler,
  type BackgroundTasksMiddleware,
  type BackgroundTasksOptions,
  type HttpErrorHandler,
  type HttpErrorHandlerOptions,
} from '../../lib';
import { captureLogger, type CapturedLogger } from './capture';

export type ExpressFactory = () => Express;

/** Both supported majors, for `describe.each`. */
export const EXPRESS_VERSIONS: Array<[string, ExpressFactory]> = [
  ['Express 5', express5],
  ['Express 4', express4 as unknown as ExpressFactory],
];

export interface TestApp {
  app: Express;
  bg: BackgroundTasksMiddleware;
  onError: HttpErrorHandler;
  log: CapturedLogger;
}

export interface TestAppOptions {
  tasks?: Omit<BackgroundTasksOptions, 'logger'>;
  errors?: Omit<HttpErrorHandlerOptions, 'logger' | 'backgroundTasks'>;
  /** Mount `backgroundTasks()` before the routes (default true). */
  mountTasks?: boolean;
  /** A middleware mounted first, before `backgroundTasks()`. */
  before?: RequestHandler;
}

export function makeApp(
  createExpress: ExpressFactory,
  routes: (app: Express) => void,
  options: TestAppOptions = {},
): TestApp {
  const log = captureLogger();
  const bg = backgroundTasks({ logger: log.logger, ...options.tasks });
  const app = createExpress();
  if (options.before !== undefined) app.use(options.before);
  if (options.mountTasks !== false) app.use(bg);
  routes(app);
  const onError = httpErrorHandler({ logger: log.logger, ...options.errors });
  app.use(onError);
  return { app, bg, onError, log };
}

/** A promise with its resolve function, to hold a task open until the test lets it go. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}
