/**
 * Hostile input to httpErrorHandler(): every value in the list gets a valid plain-text 4xx/5xx
 * response (or, after headers were sent, a closed connection), a 5xx never shows the error's
 * message or stack, and the server keeps serving. One table, run on Express 5 and 4.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express, NextFunction, Request, Response } from 'express';
import createError from 'http-errors';
import { LOG_MESSAGES, notFound } from '../lib';
import { EXPRESS_VERSIONS, makeApp, type TestAppOptions } from './support/apps';
import type { CapturedLogger } from './support/capture';

type Route = (req: Request, res: Response, next: NextFunction) => unknown;

interface HostileCase {
  /** What the route does; by default `next(thrown)`. */
  route: Route;
  status: number;
  /** The exact body; by default the status text for a 5xx. */
  body?: string;
  /** A secret that must not appear in the response. */
  secret?: string;
  options?: TestAppOptions;
  /** A request body to send (as a POST) that the route never reads. */
  upload?: Buffer;
  /** Express 5 only (async rejections). */
  express5Only?: boolean;
  /** Further checks on the log once tasks are idle. */
  check?: (log: CapturedLogger) => void;
}

const passOn =
  (thrown: unknown): Route =>
  (_req, _res, next) =>
    next(thrown);
const withHeaders = (headers: Record<string, unknown>) =>
  passOn(createError(401, 'who are you', { headers }));
const secret = 'SECRET-internal-10.1.2.3';
const megabyte = 'm'.repeat(1024 * 1024);

const unreadableMessage = Object.defineProperty(new Error(), 'message', {
  get() {
    throw new Error('message getter exploded');
  },
});

const hostile: Record<string, HostileCase> = {
  'thrown null (async: Express 5 makes it an Error)': {
    route: async () => {
      throw null;
    },
    status: 500,
    express5Only: true,
  },
  'thrown undefined (async)': {
    route: async () => {
      throw undefined;
    },
    status: 500,
    express5Only: true,
  },
  'thrown null (sync: Express treats it as "no error", so the route falls through to notFound)': {
    route: () => {
      throw null;
    },
    status: 404,
    body: 'Cannot GET /hostile',
  },
  'a string': { route: passOn(`boom ${secret}`), status: 500, secret },
  'a number': { route: passOn(42), status: 500 },
  'a plain object': { route: passOn({ message: secret, stack: secret }), status: 500, secret },
  "an object with status '404'": {
    route: passOn({ status: '404', message: secret }),
    status: 500,
    secret,
  },
  'an object with status NaN': { route: passOn({ status: NaN }), status: 500 },
  'an object with status -1': { route: passOn({ status: -1 }), status: 500 },
  'an object with status 600': { route: passOn({ status: 600 }), status: 500 },
  'an object with status 302': { route: passOn({ status: 302 }), status: 500 },
  'an object with status 1e9': { route: passOn({ statusCode: 1e9 }), status: 500 },
  'an object with status 499 (a valid code with no standard text)': {
    route: passOn({ status: 499, message: secret }),
    status: 499,
    body: 'Client Error',
  },
  'an HttpError made with createError(NaN)': {
    route: passOn(createError(NaN as never, secret)),
    status: 500,
    secret,
  },
  'an HttpError with CR/LF in a header value': {
    route: withHeaders({ 'X-Evil': 'a\r\nSet-Cookie: pwned=1', 'X-Fine': 'ok' }),
    status: 401,
    body: 'who are you',
    check: (log) =>
      expect(log.find(LOG_MESSAGES.headerSkipped).map((r) => r.headers)).toEqual([['X-Evil']]),
  },
  'an HttpError with an invalid header name': {
    route: withHeaders({ 'Bad Header:': 'x', 'X-Fine': 'ok' }),
    status: 401,
    body: 'who are you',
  },
  'an HttpError with a non-string header value': {
    route: withHeaders({ 'X-Object': { a: 1 }, 'X-Fn': () => 1, 'X-Nan': NaN, 'X-Fine': 'ok' }),
    status: 401,
    body: 'who are you',
    check: (log) =>
      expect(log.find(LOG_MESSAGES.headerSkipped).map((r) => r.headers)).toEqual([
        ['X-Object', 'X-Fn', 'X-Nan'],
      ]),
  },
  'an HttpError overriding Content-Type, Content-Length and Transfer-Encoding': {
    route: withHeaders({
      'Content-Type': 'text/html',
      'Content-Length': '3',
      'Transfer-Encoding': 'chunked',
    }),
    status: 401,
    body: 'who are you',
  },
  'an HttpError setting a cookie': {
    route: withHeaders({ 'Set-Cookie': ['a=1', 'b=2'] }),
    status: 401,
    body: 'who are you',
  },
  'a 4xx with a 1 MB message': {
    route: passOn(createError(400, megabyte)),
    status: 400,
    body: megabyte,
  },
  'a 5xx with a 1 MB message': {
    route: passOn(createError(500, megabyte)),
    status: 500,
    secret: megabyte.slice(0, 100),
  },
  'a message with CR/LF (the log stays one JSON record)': {
    route: passOn(createError(500, `line one\n{"level":"error","message":"forged"}\r\n${secret}`)),
    status: 500,
    secret,
    check: (log) => {
      const [record] = log.find(LOG_MESSAGES.requestFailed);
      expect(record.line).not.toMatch(/[\r\n]/);
      expect(JSON.parse(record.line).error.message).toContain('"forged"');
    },
  },
  'an error whose message getter throws': {
    route: passOn(unreadableMessage),
    status: 500,
    check: (log) =>
      expect(log.find(LOG_MESSAGES.requestFailed)[0].error).toMatchObject({
        name: 'Error',
        message: '(unreadable message)',
      }),
  },
  'an HttpError whose message getter throws': {
    route: passOn(
      Object.defineProperty(createError(400), 'message', {
        get() {
          throw new Error('nope');
        },
      }),
    ),
    status: 400,
    body: 'Bad Request',
  },
  'a revoked proxy': {
    route: passOn(
      (() => {
        const { proxy, revoke } = Proxy.revocable({}, {});
        revoke();
        return proxy;
      })(),
    ),
    status: 500,
  },
  'an HttpError with a revoked proxy as a header value': {
    route: withHeaders({
      'X-Proxy': (() => {
        const { proxy, revoke } = Proxy.revocable([], {});
        revoke();
        return proxy;
      })(),
      'X-Fine': 'ok',
    }),
    status: 401,
    body: 'who are you',
  },
  'an HttpError whose status getter changes its answer': {
    route: passOn(
      (() => {
        const error = createError(400, 'first answer');
        let reads = 0;
        // Express 4 reads `status` once before the handler; every read after the handler's says 200.
        Object.defineProperty(error, 'status', { get: () => (reads++ < 2 ? 400 : 200) });
        return error;
      })(),
    ),
    status: 400,
    body: 'first answer',
  },
  'a 5xx HttpError made with expose: true': {
    route: passOn(createError(503, secret, { expose: true })),
    status: 503,
    secret,
  },
  'a request with an unread 8 MB body': {
    upload: Buffer.alloc(8 * 1024 * 1024, 'x'),
    route: passOn(createError(413, 'Too big')),
    status: 413,
    body: 'Too big',
  },
  'an error thrown after res.write()': {
    route: (_req, res, next) => {
      res.write('partial');
      next(new Error(secret));
    },
    status: 200, // the headers went out before the error: the connection is closed instead
  },
  'an override that throws': {
    route: passOn(createError(418, 'teapot')),
    options: {
      errors: {
        overrides: [
          {
            match: 418,
            handle: () => {
              throw new Error(secret);
            },
          },
        ],
      },
    },
    status: 418,
    body: 'teapot',
  },
  'an override that rejects': {
    route: passOn(createError(418, 'teapot')),
    options: {
      errors: { overrides: [{ match: 418, handle: () => Promise.reject(new Error(secret)) }] },
    },
    status: 418,
    body: 'teapot',
  },
  'an override that never responds': {
    route: passOn(createError(418, 'teapot')),
    options: {
      errors: {
        overrideTimeoutMs: 20,
        overrides: [{ match: 418, handle: () => new Promise(() => undefined) }],
      },
    },
    status: 418,
    body: 'teapot',
  },
  'a notifier that throws': {
    route: passOn(createError(500, secret)),
    options: {
      errors: {
        notify: () => {
          throw new Error('notifier down');
        },
      },
    },
    status: 500,
    secret,
    check: (log) => expect(log.find(LOG_MESSAGES.taskFailed)).toHaveLength(1),
  },
  'an onTaskError that throws': {
    route: (_req, res, next) => {
      res.locals.backgroundTasks.add(() => Promise.reject(new Error('task failed')));
      next(createError(503, secret));
    },
    options: {
      tasks: {
        onTaskError: () => {
          throw new Error('hook down');
        },
      },
    },
    status: 503,
    secret,
    check: (log) => expect(log.find(LOG_MESSAGES.hookFailed)).toHaveLength(1),
  },
};

describe.each(EXPRESS_VERSIONS)('%s', (version, createExpress) => {
  const cases = Object.entries(hostile).filter(
    ([, c]) => version === 'Express 5' || !c.express5Only,
  );

  test.each(cases)('%s', async (_name, hostileCase) => {
    const { app, bg, log } = makeApp(
      createExpress,
      (app) => {
        app.all('/hostile', hostileCase.route);
        app.get('/ok', (_req, res) => void res.send('still serving'));
        app.use(notFound());
      },
      hostileCase.options,
    );
    const server = await listen(app);
    try {
      const response = await rawGet(server, '/hostile', hostileCase.upload);
      expect(response.status).toBe(hostileCase.status);
      if (hostileCase.status === 200) {
        expect(response.complete).toBe(false);
        expect(response.body).toBe('partial');
      } else {
        expect(response.headers['content-type']).toBe('text/plain; charset=utf-8');
        expect(response.headers['x-content-type-options']).toBe('nosniff');
        expect(response.body).not.toBe('undefined');
        const expectedBody =
          hostileCase.body ??
          (hostileCase.status >= 500 ? http.STATUS_CODES[hostileCase.status] : undefined);
        if (expectedBody !== undefined) expect(response.body).toBe(expectedBody);
        expect(response.headers['set-cookie']).toBeUndefined();
      }
      if (hostileCase.secret !== undefined) expect(response.body).not.toContain(hostileCase.secret);
      expect(response.body).not.toMatch(/\n\s+at /); // no stack
      expect((await rawGet(server, '/ok')).body).toBe('still serving');
      await bg.idle();
      hostileCase.check?.(log);
    } finally {
      server.close();
    }
  });
});

async function listen(app: Express): Promise<http.Server> {
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** A GET (or, with a body, a POST) over a plain socket: reports a cut connection instead of failing. */
function rawGet(server: http.Server, path: string, upload?: Buffer) {
  const { port } = server.address() as AddressInfo;
  return new Promise<{
    status: number;
    headers: http.IncomingHttpHeaders;
    body: string;
    complete: boolean;
  }>((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, agent: false, method: upload ? 'POST' : 'GET' },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('close', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body, complete: res.complete }),
        );
      },
    );
    req.on('error', reject);
    req.end(upload);
  });
}
