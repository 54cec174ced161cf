/**
 * The benchmarked scenarios: each builds one app answering GET / with a small JSON body (or, for
 * the error path, a thrown `createError(500)`), exposes it as a plain Node request listener for
 * in-process injection, and can listen on 127.0.0.1 for the HTTP part.
 */
import { Console } from 'node:console';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express from 'express';
import Fastify from 'fastify';
import createError from 'http-errors';
import onFinished from 'on-finished';
import { backgroundTasks, httpErrorHandler } from '../lib';
import { silentLogger, taskFailureLog } from './logger';
import { handWrittenTracedTask, registerSdk } from './otel';

export type Listener = (req: IncomingMessage, res: ServerResponse) => void;

export interface App {
  /** The request listener that light-my-request injects into. */
  handler: Listener;
  /** The status every request answers with. */
  status: number;
  /** Resolves once the app's deferred work (its background tasks) is done. */
  idle(): Promise<void>;
  /** Listens on 127.0.0.1, on a free port. */
  listen(): Promise<number>;
}

export interface Scenario {
  /** The number in the issue (1 to 8), with a letter for the reference apps. */
  id: string;
  title: string;
  /** Measured over HTTP only (its tasks take 200 ms, so in-process batches would only wait). */
  httpOnly?: boolean;
  build(): Promise<App>;
}

const BODY = { ok: true, message: 'hello' };

/** The background task of every scenario that runs one: it does nothing. */
function noopTask(): void {}

/** The task of scenario 6: resolves after 200 ms. */
function slowTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 200));
}

/** Concurrency for scenario 6; see SLOW_CONCURRENCY_NOTE. */
export const SLOW_CONCURRENCY = Infinity;
export const SLOW_CONCURRENCY_NOTE =
  'scenario 6 runs with `concurrency: Infinity` (and `maxPending: Infinity`): at ~10k req/s a 200 ms task ' +
  'keeps ~2,000 tasks running; with the default 16 slots task throughput would be 80/s, the line would hit ' +
  'maxPending (10,000) within seconds and the run would measure rejection logging instead of the response path';

const idleNow = () => Promise.resolve();

function expressApp(
  setup: (app: express.Express) => void,
  idle: () => Promise<void> = idleNow,
  status = 200,
): App {
  const app = express();
  setup(app);
  return {
    handler: app as unknown as Listener,
    status,
    idle,
    listen: () => listenNode(app as unknown as Listener),
  };
}

function listenNode(handler: Listener): Promise<number> {
  const server = http.createServer(handler);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

async function fastifyApp(withHook: boolean): Promise<App> {
  const logger = silentLogger();
  const app = Fastify({ logger: false });
  if (withHook) {
    app.addHook('onResponse', (_request, _reply, done) => {
      Promise.resolve()
        .then(noopTask)
        .catch((error: unknown) => logger.error('background task failed', { error }));
      done();
    });
  }
  app.get('/', async () => BODY);
  await app.ready();
  return {
    handler: app.routing as Listener,
    status: 200,
    idle: idleNow,
    listen: async () => {
      await app.listen({ port: 0, host: '127.0.0.1' });
      return (app.server.address() as AddressInfo).port;
    },
  };
}

/** Express's default error handler (finalhandler; NODE_ENV=production, so no stack in the body). */
function expressError(): App {
  return expressApp(
    (app) => {
      app.get('/', () => {
        throw createError(500);
      });
    },
    idleNow,
    500,
  );
}

/** A stream that accepts and drops everything written to it. */
function nullStream(): Writable {
  return new Writable({ write: (_chunk, _encoding, done) => done() });
}

/** The careful hand-written baseline: `task` after the response, its failure logged. */
function handWrittenApp(task: () => unknown): App {
  const log = taskFailureLog(silentLogger());
  return expressApp((app) =>
    app.get('/', (_req, res) => {
      onFinished(res, () => Promise.resolve().then(task).catch(log));
      res.json(BODY);
    }),
  );
}

/** The suite mounted the way its README says: the middleware first, the error handler last. */
function suiteApp(
  route: express.RequestHandler,
  options: Parameters<typeof backgroundTasks>[0] = {},
  status = 200,
): App {
  const logger = silentLogger();
  const bg = backgroundTasks({ logger, ...options });
  return expressApp(
    (app) => {
      app.use(bg);
      app.get('/', route);
      app.use(httpErrorHandler({ backgroundTasks: bg, notify: () => undefined }));
    },
    () => bg.idle(),
    status,
  );
}

export const SCENARIOS: Record<string, Scenario> = {
  bare: {
    id: '1',
    title: 'bare Express',
    build: async () => expressApp((app) => app.get('/', (_req, res) => void res.json(BODY))),
  },
  noopMiddleware: {
    id: '2',
    title: 'Express + one no-op middleware',
    build: async () =>
      expressApp((app) => {
        app.use((_req, _res, next) => next());
        app.get('/', (_req, res) => void res.json(BODY));
      }),
  },
  suiteIdle: {
    id: '3',
    title: 'backgroundTasks() + httpErrorHandler(), no task',
    build: async () => suiteApp((_req, res) => void res.json(BODY)),
  },
  handWritten: {
    id: '4',
    title: 'hand-written: onFinished + Promise.then(task).catch(log)',
    build: async () => handWrittenApp(noopTask),
  },
  handWrittenSlowTask: {
    id: '4s',
    title: 'hand-written, one 200 ms task per request',
    httpOnly: true,
    build: async () => handWrittenApp(slowTask),
  },
  suiteTask: {
    id: '5',
    title: 'suite, one no-op task per request',
    build: async () =>
      suiteApp((_req, res) => {
        res.locals.backgroundTasks.add(noopTask);
        res.json(BODY);
      }),
  },
  suiteSlowTask: {
    id: '6',
    title: 'suite, one 200 ms task per request',
    httpOnly: true,
    build: async () =>
      suiteApp(
        (_req, res) => {
          res.locals.backgroundTasks.add(slowTask);
          res.json(BODY);
        },
        { concurrency: SLOW_CONCURRENCY, maxPending: Infinity },
      ),
  },
  suiteError: {
    id: '7',
    title: 'error path: httpErrorHandler, one notifier',
    build: async () =>
      suiteApp(
        () => {
          throw createError(500);
        },
        {},
        500,
      ),
  },
  expressError: {
    id: '7r',
    title: "error path: Express's default handler, its log formatted into a null stream",
    build: async () => {
      // Express's default handler logs every error with console.error(err). Here that output is
      // formatted as usual and then dropped, as the suite's records are by its null transport:
      // both sides pay for building their log line, neither for a terminal.
      console.error = new Console({ stdout: nullStream(), stderr: nullStream() }).error;
      return expressError();
    },
  },
  expressErrorUnlogged: {
    id: '7s',
    title: "error path: Express's default handler with console.error removed (no log at all)",
    build: async () => {
      console.error = () => undefined;
      return expressError();
    },
  },
  fastifyBare: {
    id: '8r',
    title: 'bare Fastify',
    build: () => fastifyApp(false),
  },
  fastifyHook: {
    id: '8',
    title: 'Fastify + onResponse hook running the no-op task',
    build: () => fastifyApp(true),
  },
  handWrittenOtel: {
    id: '9r',
    title: 'OpenTelemetry SDK registered: hand-written span + histogram point around the task',
    build: async () => {
      const dropSpans = registerSdk();
      const traced = handWrittenTracedTask(noopTask);
      const app = expressApp((app) =>
        app.get('/', (_req, res) => {
          traced(res);
          res.json(BODY);
        }),
      );
      return { ...app, idle: async () => dropSpans() };
    },
  },
  suiteTaskOtel: {
    id: '9',
    title: 'OpenTelemetry SDK registered: suite, one no-op task (its span and metrics)',
    build: async () => {
      const dropSpans = registerSdk();
      const app = suiteApp((_req, res) => {
        res.locals.backgroundTasks.add(noopTask);
        res.json(BODY);
      });
      return { ...app, idle: () => app.idle().then(dropSpans) };
    },
  },
};
