/**
 * httpErrorHandler(): the response it writes, what it logs, the notifiers it queues and the
 * overrides it lets answer, on Express 5 and 4.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import createError from 'http-errors';
import request from 'supertest';
import { LOG_MESSAGES, notFound } from '../lib';
import { MAX_ERROR_HEADER_BYTES } from '../lib/error-response';
import { EXPRESS_VERSIONS, gate, makeApp, type ExpressFactory } from './support/apps';

/** An app with one route that fails with `thrown` through `next()`, as both majors support. */
function failingApp(
  createExpress: ExpressFactory,
  thrown: unknown,
  options: Parameters<typeof makeApp>[2] = {},
) {
  return makeApp(
    createExpress,
    (app) => {
      app.all('/fail', (_req, _res, next) => next(thrown));
    },
    options,
  );
}

describe.each(EXPRESS_VERSIONS)('%s', (_version, createExpress) => {
  describe('the default response', () => {
    test('a 4xx HttpError: its status, its message, plain text, nosniff', async () => {
      const { app } = failingApp(createExpress, createError(404, 'No such user'));
      const res = await request(app).get('/fail').expect(404, 'No such user');
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['content-security-policy']).toBe("default-src 'none'");
      expect(res.headers['content-length']).toBe(String(Buffer.byteLength('No such user')));
    });

    test('a 5xx HttpError: the status text, never its message or stack, whatever NODE_ENV says', async () => {
      const previous = process.env.NODE_ENV;
      process.env.NODE_ENV = 'development';
      try {
        const { app } = failingApp(createExpress, createError(503, 'db at 10.0.0.7 is down'));
        const res = await request(app).get('/fail').expect(503, 'Service Unavailable');
        expect(res.text).not.toContain('10.0.0.7');
      } finally {
        process.env.NODE_ENV = previous;
      }
    });

    test('an HttpError made with expose: false for a 4xx shows only the status text', async () => {
      const { app } = failingApp(
        createExpress,
        createError(400, 'internal detail', { expose: false }),
      );
      await request(app).get('/fail').expect(400, 'Bad Request');
    });

    test("an Error that http-errors' isHttpError() accepts (expose, status equal to statusCode) is an HttpError: its exposed 4xx message is shown", async () => {
      // The duck-typed form: what a second copy of http-errors (body-parser's own, say) makes.
      const duck = Object.assign(new Error('email is required'), {
        status: 400,
        statusCode: 400,
        expose: true,
      });
      expect(createError.isHttpError(duck)).toBe(true);
      await request(failingApp(createExpress, duck).app)
        .get('/fail')
        .expect(400, 'email is required');
    });

    test('short of that (expose missing or false, or statusCode not equal to status), only the status text', async () => {
      const cases = [
        { status: 400, statusCode: 400 },
        { status: 400, statusCode: 400, expose: false },
        { status: 400, statusCode: 422, expose: true },
        { status: 400, expose: true },
        { status: 503, statusCode: 503, expose: true },
      ];
      for (const fields of cases) {
        const error = Object.assign(new Error('internal detail'), fields);
        const res = await request(failingApp(createExpress, error).app).get('/fail');
        expect([res.status, res.text]).toEqual([
          fields.status,
          fields.status === 503 ? 'Service Unavailable' : 'Bad Request',
        ]);
      }
    });

    test('a plain Error becomes a 500 with the status text', async () => {
      const error = new Error('secret path /srv/app/config.json');
      const { app } = failingApp(createExpress, error);
      const res = await request(app).get('/fail').expect(500, 'Internal Server Error');
      expect(res.text).not.toContain('secret');
    });

    test('a plain Error with a 4xx status keeps the status but not its message', async () => {
      const error = Object.assign(new Error('row 7 of users violates constraint'), { status: 422 });
      const { app } = failingApp(createExpress, error);
      await request(app).get('/fail').expect(422, 'Unprocessable Entity');
    });

    test('HEAD gets the status and headers but no body', async () => {
      const { app } = failingApp(createExpress, createError(404, 'No such user'));
      const res = await request(app).head('/fail').expect(404);
      expect(res.text ?? '').toBe('');
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    });

    test("the error's headers are applied, but cannot replace framing headers or set cookies", async () => {
      const error = createError(401, 'Log in first', {
        headers: {
          'WWW-Authenticate': 'Bearer realm="api"',
          'Retry-After': 30,
          'Content-Type': 'text/html',
          'Content-Length': '1',
          'Transfer-Encoding': 'chunked',
          'Set-Cookie': 'session=stolen',
          'X-Content-Type-Options': 'sniff-away',
        },
      });
      const { app, log } = failingApp(createExpress, error);
      const res = await request(app).get('/fail').expect(401, 'Log in first');
      expect(res.headers['www-authenticate']).toBe('Bearer realm="api"');
      expect(res.headers['retry-after']).toBe('30');
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(res.headers['content-length']).toBe(String('Log in first'.length));
      expect(res.headers['transfer-encoding']).toBeUndefined();
      expect(res.headers['set-cookie']).toBeUndefined();
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(log.find(LOG_MESSAGES.headerSkipped)).toEqual([
        expect.objectContaining({
          count: 5,
          tooLarge: 0,
          headers: [
            'Content-Type',
            'Content-Length',
            'Transfer-Encoding',
            'Set-Cookie',
            'X-Content-Type-Options',
          ],
        }),
      ]);
    });

    test('10,000 invalid headers: one line for the response, with the count and the first 10 names', async () => {
      const headers: Record<string, string> = { 'X-Fine': 'ok' };
      for (let i = 0; i < 10_000; i++) headers[`X-Bad-${i}`] = `a\r\nb`;
      const { app, log } = failingApp(createExpress, createError(400, 'bad', { headers }));
      const res = await request(app).get('/fail').expect(400, 'bad');
      expect(res.headers['x-fine']).toBe('ok');
      expect(log.find(LOG_MESSAGES.headerSkipped)).toEqual([
        expect.objectContaining({
          count: 10_000,
          tooLarge: 0,
          headers: Array.from({ length: 10 }, (_, i) => `X-Bad-${i}`),
        }),
      ]);
    });

    test(`the error's headers are sent up to ${MAX_ERROR_HEADER_BYTES} bytes in all: a 1 MiB one is dropped (a client could not read the response), the others are sent, one line says so`, async () => {
      const headers = {
        'Retry-After': '30',
        'X-Huge': 'x'.repeat(1024 * 1024),
        ['X-Long-Name-'.padEnd(1_000, 'n')]: 'y'.repeat(7_500),
        'X-After': 'ok',
      };
      const { app, log } = failingApp(createExpress, createError(503, 'down', { headers }));
      // Node's own client refuses a head over 16 KB (HPE_HEADER_OVERFLOW): this one reads it.
      const res = await request(app).get('/fail').expect(503, 'Service Unavailable');
      expect(res.headers['retry-after']).toBe('30');
      expect(res.headers['x-after']).toBe('ok');
      expect(res.headers['x-huge']).toBeUndefined();
      expect(Object.keys(res.headers).some((name) => name.startsWith('x-long-name-'))).toBe(false);
      const [line] = log.find(LOG_MESSAGES.headerSkipped);
      expect(line).toMatchObject({ count: 2, tooLarge: 2 });
      expect(line.headers).toEqual([
        'X-Huge',
        expect.stringMatching(/^X-Long-Name-n+… \[cut: 1000 characters in all\]$/),
      ]);
      expect(JSON.stringify(line).length).toBeLessThan(1_000);
    });

    test('headers set before the error (such as CORS) stay; content headers of the failed body go', async () => {
      const { app } = makeApp(createExpress, (app) => {
        app.get('/fail', (_req, res, next) => {
          res.setHeader('Access-Control-Allow-Origin', '*');
          res.setHeader('Content-Encoding', 'gzip');
          res.setHeader('Content-Disposition', 'attachment; filename="report.csv"');
          next(createError(400, 'bad'));
        });
      });
      const res = await request(app).get('/fail').expect(400, 'bad');
      expect(res.headers['access-control-allow-origin']).toBe('*');
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.headers['content-disposition']).toBeUndefined();
    });

    test('caching headers of the failed response go, so no cache keeps the error as the page', async () => {
      const { app } = makeApp(createExpress, (app) => {
        app.get('/fail', (_req, res, next) => {
          res.setHeader('Cache-Control', 'public, max-age=3600');
          res.setHeader('Expires', 'Thu, 01 Jan 2099 00:00:00 GMT');
          res.setHeader('ETag', '"v1"');
          res.setHeader('Last-Modified', 'Wed, 21 Oct 2015 07:28:00 GMT');
          res.setHeader('Vary', 'Accept-Encoding');
          next(new Error('database down'));
        });
      });
      const res = await request(app).get('/fail').expect(500, 'Internal Server Error');
      for (const name of ['cache-control', 'expires', 'etag', 'last-modified'])
        expect(res.headers[name]).toBeUndefined();
      expect(res.headers.vary).toBe('Accept-Encoding');
    });

    test("the error's own headers may set Cache-Control and Expires again (a 503 with Retry-After)", async () => {
      const { app } = makeApp(createExpress, (app) => {
        app.get('/fail', (_req, res, next) => {
          res.setHeader('Cache-Control', 'public, max-age=3600');
          res.setHeader('ETag', '"v1"');
          next(
            createError(503, 'maintenance', {
              headers: { 'Retry-After': '120', 'Cache-Control': 'no-store', Expires: '0' },
            }),
          );
        });
      });
      const res = await request(app).get('/fail').expect(503, 'Service Unavailable');
      expect(res.headers).toMatchObject({
        'retry-after': '120',
        'cache-control': 'no-store',
        expires: '0',
      });
      expect(res.headers.etag).toBeUndefined();
    });

    test('notFound() answers unknown routes with a plain-text 404', async () => {
      const { app } = makeApp(createExpress, (app) => {
        app.get('/known', (_req, res) => void res.end());
        app.use(notFound());
      });
      const res = await request(app).get('/nowhere').expect(404, 'Cannot GET /nowhere');
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    });
  });

  describe('what it logs', () => {
    test('a 5xx at error, with the stack and the request', async () => {
      const { app, log } = failingApp(createExpress, createError(500, 'Something went wrong'));
      await request(app).post('/fail?a=1').set('X-Request-Id', 'err-1').expect(500);
      expect(log.find(LOG_MESSAGES.requestFailed)).toEqual([
        expect.objectContaining({
          level: 'error',
          status: 500,
          requestId: 'err-1',
          method: 'POST',
          url: '/fail?a=1',
          error: {
            name: 'InternalServerError',
            message: 'Something went wrong',
            stack: expect.any(String),
          },
        }),
      ]);
    });

    test('a non-HttpError at error, with its own name, message and stack', async () => {
      const { app, log } = failingApp(createExpress, new TypeError('undefined is not a function'));
      await request(app).get('/fail').expect(500);
      const [record] = log.find(LOG_MESSAGES.requestFailed);
      expect(record).toMatchObject({
        level: 'error',
        status: 500,
        error: { name: 'TypeError', message: 'undefined is not a function' },
      });
      expect(record.error).toHaveProperty(
        'stack',
        expect.stringContaining('TypeError: undefined is not a function'),
      );
    });

    test('a 4xx at info, without a stack; the level can be chosen', async () => {
      const quiet = failingApp(createExpress, createError(404, 'gone'));
      await request(quiet.app).get('/fail').expect(404);
      const [info] = quiet.log.find(LOG_MESSAGES.requestFailed);
      expect(info).toMatchObject({
        level: 'info',
        status: 404,
        error: { name: 'NotFoundError', message: 'gone' },
      });
      expect(info.error).not.toHaveProperty('stack');

      const loud = failingApp(createExpress, createError(404, 'gone'), {
        errors: { clientErrorLogLevel: 'warn' },
      });
      await request(loud.app).get('/fail').expect(404);
      expect(loud.log.find(LOG_MESSAGES.requestFailed)[0].level).toBe('warn');
    });
  });

  describe('notifiers', () => {
    test('one notifier runs after the error response is sent, with the error and the request', async () => {
      const seen: Array<[string, number, string, boolean]> = [];
      const responseSent = gate();
      const { app, bg } = failingApp(createExpress, createError(500, 'Something went wrong'), {
        errors: {
          notify: async (err, req) => {
            const finished = req.res!.writableFinished; // as the notifier starts
            await responseSent.promise;
            seen.push([err.message, err.status, req.originalUrl, finished]);
          },
        },
      });
      await request(app).get('/fail').expect(500);
      responseSent.open();
      await bg.idle();
      expect(seen).toEqual([['Something went wrong', 500, '/fail', true]]);
    });

    test('several notifiers all run, in order, and a failing one is isolated and logged', async () => {
      const events: string[] = [];
      const { app, bg, log } = failingApp(createExpress, createError(400, 'bad input'), {
        errors: {
          notify: [
            function emailOps(err) {
              events.push(`email ${err.status}`);
            },
            function pageOps() {
              throw new Error('pager down');
            },
            function slackOps(err) {
              events.push(`slack ${err.message}`);
            },
          ],
        },
      });
      await request(app).get('/fail').expect(400);
      await bg.idle();
      expect(events).toEqual(['email 400', 'slack bad input']);
      expect(log.find(LOG_MESSAGES.taskFailed)).toEqual([
        expect.objectContaining({
          task: 'pageOps',
          statusCode: 400,
          error: expect.objectContaining({ message: 'pager down' }),
        }),
      ]);
    });

    test("notifiers run when backgroundTasks() was not mounted, on the handler's own runner", async () => {
      const events: string[] = [];
      const { app, onError } = failingApp(createExpress, createError(502, 'upstream'), {
        mountTasks: false,
        errors: { notify: (err) => void events.push(err.message) },
      });
      const res = await request(app).get('/fail').expect(502, 'Bad Gateway');
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
      await onError.idle();
      expect(events).toEqual(['upstream']);
      expect(onError.stats()).toMatchObject({ succeeded: 1 });
    });

    test.each([
      ['?backgroundTasks=x', '/fail?backgroundTasks=x'],
      // An array on Express 5 and 4 alike (`?a[b]=1` is an object on Express 4's parser only).
      ['?backgroundTasks=1&backgroundTasks=2', '/fail?backgroundTasks=1&backgroundTasks=2'],
      ['?requestId[]=a&backgroundTasks=', '/fail?requestId[]=a&backgroundTasks='],
    ])(
      'an app that merges the query into res.locals (%s): still plain text, the notifier runs in the request queue, the line has the request id',
      async (_query, url) => {
        // The handler once read its queue back from res.locals: `tasks.add is not a function`,
        // and Express's HTML 500 page with the library's stack.
        const events: string[] = [];
        const { app, bg, log } = makeApp(
          createExpress,
          (app) => {
            app.use((req, res, next) => {
              Object.assign(res.locals, req.query);
              next();
            });
            app.get('/fail', () => {
              throw new Error('db password is hunter2');
            });
          },
          { errors: { notify: (_err, _req, ctx) => void events.push(ctx.request.id) } },
        );
        const res = await request(app)
          .get(url)
          .set('X-Request-Id', 'merged-1')
          .expect(500, 'Internal Server Error');
        expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
        await bg.idle();
        expect(events).toEqual(['merged-1']);
        expect(bg.stats()).toMatchObject({ succeeded: 1, failed: 0 });
        expect(log.find(LOG_MESSAGES.requestFailed)).toEqual([
          expect.objectContaining({ requestId: 'merged-1', status: 500 }),
        ]);
      },
    );

    test('an error after headers were sent: logged, notified, and the connection is closed', async () => {
      const events: string[] = [];
      const { app, bg, log } = makeApp(
        createExpress,
        (app) => {
          app.get('/stream', (_req, res, next) => {
            res.write('partial ');
            next(createError(500, 'broke mid-stream'));
          });
        },
        { errors: { notify: (err) => void events.push(err.message) } },
      );
      const outcome = await rawGet(app, '/stream');
      expect(outcome.status).toBe(200);
      expect(outcome.body).toBe('partial ');
      expect(outcome.complete).toBe(false);
      await bg.idle();
      expect(events).toEqual(['broke mid-stream']);
      expect(log.find(LOG_MESSAGES.requestFailed)).toHaveLength(1);
    });
  });

  describe('overrides', () => {
    test('match by status, by error class, or by predicate; the first match answers, and notifiers still run', async () => {
      const events: string[] = [];
      const { app, bg } = makeApp(
        createExpress,
        (app) => {
          app.get('/missing', () => {
            throw createError(404, 'no such page');
          });
          app.get('/teapot', () => {
            throw createError(418, 'short and stout');
          });
          app.get('/custom', () => {
            throw new ValidationError('email is required');
          });
          app.get('/other', () => {
            throw createError(400, 'plain');
          });
        },
        {
          errors: {
            notify: (err) => void events.push(`notified ${err.status}`),
            overrides: [
              {
                match: createError.NotFound,
                handle: (_e, _q, res) => void res.status(404).json({ error: 'not found' }),
              },
              {
                match: 418,
                handle: (e, _q, res) => void res.status(418).send(`teapot: ${e.message}`),
              },
              {
                match: ValidationError,
                handle: (e, _q, res, tasks) => {
                  tasks.add(() => events.push('override task'));
                  res.status(422).json({ error: (e.cause as Error).message });
                },
              },
              { match: (e) => e.status === 418, handle: () => events.push('never reached') },
            ],
          },
        },
      );
      await request(app).get('/missing').expect(404, { error: 'not found' });
      await request(app).get('/teapot').expect(418, 'teapot: short and stout');
      await request(app).get('/custom').expect(422, { error: 'email is required' });
      await request(app).get('/other').expect(400, 'plain');
      await bg.idle();
      expect(events.sort()).toEqual([
        'notified 400',
        'notified 404',
        'notified 418',
        'notified 500',
        'override task',
      ]);
    });

    const broken: Array<[string, (res: import('express').Response) => unknown, string]> = [
      [
        'throws',
        () => {
          throw new Error('override bug');
        },
        'threw',
      ],
      ['rejects', () => Promise.reject(new Error('override bug')), 'threw'],
      ['returns without responding', () => undefined, 'did not respond'],
      ['resolves without responding', () => Promise.resolve(), 'did not respond'],
      ['never settles', () => new Promise(() => undefined), 'timed out'],
    ];
    test.each(broken)(
      'an override that %s falls back to the default response, and is logged',
      async (_name, handle, reason) => {
        const events: string[] = [];
        const { app, bg, log } = failingApp(createExpress, createError(409, 'conflict'), {
          errors: {
            notify: () => void events.push('notified'),
            overrideTimeoutMs: 50,
            overrides: [{ match: 409, handle: (_e, _q, res) => handle(res) }],
          },
        });
        const res = await request(app).get('/fail').expect(409, 'conflict');
        expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
        await bg.idle();
        expect(events).toEqual(['notified']);
        expect(log.find(LOG_MESSAGES.overrideFailed)).toEqual([
          expect.objectContaining({ level: 'error', reason, status: 409 }),
        ]);
      },
    );

    test('a predicate that throws is logged and treated as no match', async () => {
      const { app, log } = failingApp(createExpress, createError(400, 'bad'), {
        errors: {
          overrides: [
            {
              match: () => {
                throw new Error('predicate bug');
              },
              handle: (_e, _q, res) => void res.status(299).end(),
            },
          ],
        },
      });
      await request(app).get('/fail').expect(400, 'bad');
      expect(log.find(LOG_MESSAGES.overrideFailed)).toEqual([
        expect.objectContaining({ reason: 'match threw' }),
      ]);
    });
  });
});

describe('Express 5 only', () => {
  test('a rejected async handler reaches the handler', async () => {
    const [, express5] = EXPRESS_VERSIONS[0];
    const { app } = makeApp(express5, (app) => {
      app.get('/async', async () => {
        await new Promise((resolve) => setImmediate(resolve));
        throw createError(403, 'not yours');
      });
    });
    await request(app).get('/async').expect(403, 'not yours');
  });
});

class ValidationError extends Error {
  override name = 'ValidationError';
}

/** A GET over a raw socket that reports whether the response completed or the connection was cut. */
async function rawGet(
  app: Express,
  path: string,
): Promise<{ status: number; body: string; complete: boolean }> {
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('close', () => resolve({ status: res.statusCode!, body, complete: res.complete }));
        })
        .on('error', reject);
    });
  } finally {
    server.close();
  }
}
