/**
 * backgroundTasks(): when tasks run, in what order, with what arguments and context, and what
 * happens to each kind of failure. Every case goes through real HTTP, on Express 5 and 4.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { runInNewContext } from 'node:vm';
import createError from 'http-errors';
import request from 'supertest';
import { LOG_MESSAGES, type BackgroundTasks, type TaskContext, type TaskFailure } from '../lib';
import { randomUuid } from '../lib/request-id';
import { EXPRESS_VERSIONS, gate, makeApp } from './support/apps';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe.each(EXPRESS_VERSIONS)('%s', (_version, createExpress) => {
  describe('when tasks run', () => {
    test('after the response has finished, without delaying it', async () => {
      const held = gate();
      const seen: boolean[] = [];
      const { app, bg } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          res.locals.backgroundTasks.add(async () => {
            seen.push(res.writableFinished);
            await held.promise;
          });
          res.json({ ok: true });
        });
      });
      await request(app).get('/').expect(200, { ok: true });
      expect(bg.stats()).toMatchObject({ running: 1, succeeded: 0 });
      held.open();
      await bg.idle();
      expect(seen).toEqual([true]);
      expect(bg.stats()).toMatchObject({ pending: 0, running: 0, succeeded: 1 });
    });

    test('one after another in the order added, each awaited, with its arguments', async () => {
      const events: string[] = [];
      const step = async (name: string, ticks: number) => {
        events.push(`${name} start`);
        for (let i = 0; i < ticks; i++) await new Promise((resolve) => setImmediate(resolve));
        events.push(`${name} end`);
      };
      const { app, bg } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          res.locals.backgroundTasks
            .add(step, 'a', 3)
            .add((name: string) => events.push(`${name} sync`), 'b')
            .add(step, 'c', 1);
          res.end();
        });
      });
      await request(app).get('/').expect(200);
      await bg.idle();
      expect(events).toEqual(['a start', 'a end', 'b sync', 'c start', 'c end']);
    });

    test('a task added by a running task runs in the same run, after those already queued', async () => {
      const events: string[] = [];
      const { app, bg } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          const tasks = res.locals.backgroundTasks;
          tasks.add(() => {
            events.push('first');
            tasks.add(() => events.push('added by first'));
          });
          tasks.add(() => events.push('second'));
          res.end();
        });
      });
      await request(app).get('/').expect(200);
      await bg.idle();
      expect(events).toEqual(['first', 'second', 'added by first']);
    });

    test('a task added after the queue has run still runs', async () => {
      const events: string[] = [];
      const added = gate();
      const { app, bg } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          const tasks = res.locals.backgroundTasks;
          tasks.add(() => {
            events.push('first');
            setImmediate(() => {
              tasks.add(() => events.push('late'));
              added.open();
            });
          });
          res.end();
        });
      });
      await request(app).get('/').expect(200);
      await added.promise;
      await bg.idle();
      expect(events).toEqual(['first', 'late']);
    });

    test('tasks of many requests all run, and idle() resolves at once when nothing is queued', async () => {
      const done: number[] = [];
      const { app, bg } = makeApp(createExpress, (app) => {
        app.get('/:n', (req, res) => {
          res.locals.backgroundTasks.add(async (n: number) => {
            await new Promise((resolve) => setImmediate(resolve));
            done.push(n);
          }, Number(req.params.n));
          res.end();
        });
      });
      await bg.idle();
      await Promise.all([1, 2, 3, 4, 5].map((n) => request(app).get(`/${n}`).expect(200)));
      await bg.idle();
      expect(done.sort()).toEqual([1, 2, 3, 4, 5]);
      expect(bg.stats()).toMatchObject({ pending: 0, running: 0, succeeded: 5, failed: 0 });
    });
  });

  describe('the object form', () => {
    test('run(ctx) gets the attempt, the request and a live signal', async () => {
      const contexts: Array<Omit<TaskContext, 'signal'> & { aborted: boolean; isSignal: boolean }> =
        [];
      const { app, bg } = makeApp(createExpress, (app) => {
        app.post('/items', (_req, res) => {
          res.locals.backgroundTasks.add({
            name: 'inspect',
            run: (ctx) => {
              contexts.push({
                attempt: ctx.attempt,
                request: ctx.request,
                aborted: ctx.signal.aborted,
                isSignal: ctx.signal instanceof AbortSignal,
              });
            },
          });
          res.status(201).end();
        });
      });
      await request(app).post('/items?x=1').set('X-Request-Id', 'req-42').expect(201);
      await bg.idle();
      expect(contexts).toEqual([
        {
          attempt: 1,
          request: {
            id: 'req-42',
            method: 'POST',
            url: '/items?x=1',
            statusCode: 201,
            aborted: false,
          },
          aborted: false,
          isSignal: true,
        },
      ]);
    });
  });

  describe('request ids', () => {
    const cases: Array<[string, string | undefined, (id: string) => boolean]> = [
      ['a safe X-Request-Id is kept', 'abc-123_x.y:z', (id) => id === 'abc-123_x.y:z'],
      ['no header gets a UUID', undefined, (id) => UUID.test(id)],
      ['a header with unsafe characters gets a UUID', 'evil id<script>', (id) => UUID.test(id)],
      ['a header longer than 64 characters gets a UUID', 'a'.repeat(65), (id) => UUID.test(id)],
    ];
    test.each(cases)(
      '%s, at res.locals.requestId and in ctx.request.id',
      async (_name, header, valid) => {
        const ids: string[] = [];
        const { app, bg } = makeApp(createExpress, (app) => {
          app.get('/', (_req, res) => {
            ids.push(res.locals.requestId);
            res.locals.backgroundTasks.add({ run: (ctx) => void ids.push(ctx.request.id) });
            res.end();
          });
        });
        const call = request(app).get('/');
        if (header !== undefined) call.set('X-Request-Id', header);
        await call.expect(200);
        await bg.idle();
        expect(ids).toHaveLength(2);
        expect(ids[1]).toBe(ids[0]);
        expect(valid(ids[0])).toBe(true);
      },
    );

    test('generated ids are distinct random version 4 UUIDs, across refills of the entropy pool', () => {
      const ids = Array.from({ length: 5_000 }, () => randomUuid()); // the pool holds 1,024
      expect(new Set(ids).size).toBe(ids.length);
      for (const id of ids) expect(id).toMatch(UUID);
      // Every random hex digit varies (a digit stuck at one value would mean a byte not drawn).
      for (let at = 0; at < 36; at++) {
        if ([8, 13, 14, 18, 23].includes(at)) continue;
        expect(new Set(ids.map((id) => id[at])).size).toBeGreaterThan(at === 19 ? 3 : 15);
      }
    });
  });

  describe('failures are isolated and logged', () => {
    const failures: Array<[string, () => unknown, { name: string; message: RegExp }]> = [
      [
        'a sync throw',
        () => {
          throw new TypeError('sync boom');
        },
        { name: 'TypeError', message: /^sync boom$/ },
      ],
      [
        'a rejection',
        () => Promise.reject(new RangeError('async boom')),
        { name: 'RangeError', message: /^async boom$/ },
      ],
      [
        'a thrown string',
        () => {
          throw 'just a string';
        },
        { name: 'NonErrorThrown', message: /just a string/ },
      ],
      [
        'a thrown object',
        () => {
          throw { code: 'E_PLAIN', detail: 42 };
        },
        { name: 'NonErrorThrown', message: /E_PLAIN.*42/ },
      ],
      [
        'a rejection with undefined',
        () => Promise.reject(undefined),
        { name: 'NonErrorThrown', message: /undefined/ },
      ],
      [
        'a rejection with null',
        () => Promise.reject(null),
        { name: 'NonErrorThrown', message: /null/ },
      ],
    ];

    test.each(failures)(
      '%s is logged with every field, and the next task still runs',
      async (_name, fails, expected) => {
        const after: string[] = [];
        const failing = () => fails();
        const { app, bg, log } = makeApp(createExpress, (app) => {
          app.put('/things/:id', (_req, res) => {
            res.locals.backgroundTasks.add(failing).add(() => after.push('next ran'));
            res.status(202).end();
          });
        });
        await request(app).put('/things/7?q=1').set('X-Request-Id', 'rid-1').expect(202);
        await bg.idle();
        expect(after).toEqual(['next ran']);
        const [record, ...more] = log.find(LOG_MESSAGES.taskFailed);
        expect(more).toEqual([]);
        expect(record).toMatchObject({
          level: 'error',
          message: 'background task failed',
          task: 'failing',
          attempt: 1,
          requestId: 'rid-1',
          method: 'PUT',
          url: '/things/7?q=1',
          statusCode: 202,
          timedOut: false,
          error: { name: expected.name, message: expect.stringMatching(expected.message) },
        });
        expect(typeof record.durationMs).toBe('number');
        expect(JSON.parse(record.line).error.message).toMatch(expected.message);
        expect(bg.stats()).toMatchObject({ succeeded: 1, failed: 1, pending: 0, running: 0 });
      },
    );

    const hostilePromises: Array<[string, () => unknown, 'succeeded' | 'failed' | 'timedOut']> = [
      [
        'a promise whose own then throws',
        () =>
          Object.assign(Promise.resolve(), {
            then: () => {
              throw new Error('then exploded');
            },
          }),
        'succeeded',
      ],
      [
        'a promise whose constructor getter throws',
        () =>
          Object.defineProperty(Promise.resolve(), 'constructor', {
            get: () => {
              throw new Error('no constructor');
            },
          }),
        'failed',
      ],
      [
        'a rejected promise whose own then does nothing',
        () =>
          Object.assign(Promise.reject(new Error('hidden rejection')), { then: () => undefined }),
        'failed',
      ],
      [
        'a thenable whose then throws',
        () => ({
          then: () => {
            throw new Error('thenable exploded');
          },
        }),
        'failed',
      ],
      ['a thenable that never calls back', () => ({ then: () => undefined }), 'timedOut'],
      // Promise.prototype.then refuses a proxy as its receiver: the attempt fails, nothing throws.
      ['a proxy around a resolved promise', () => new Proxy(Promise.resolve(), {}), 'failed'],
      [
        'a resolved promise of another realm',
        () => runInNewContext('Promise.resolve(1)'),
        'succeeded',
      ],
      [
        'a rejected promise of another realm',
        () => runInNewContext('Promise.reject(new Error("elsewhere"))'),
        'failed',
      ],
      [
        'a rejected promise whose own constructor is Promise',
        () => Object.assign(Promise.reject(new Error('own constructor')), { constructor: Promise }),
        'failed',
      ],
    ];
    test.each(hostilePromises)('%s is settled safely and counted', async (_name, make, outcome) => {
      const { app, bg } = makeApp(
        createExpress,
        (app) => {
          app.get('/', (_req, res) => {
            res.locals.backgroundTasks.add(function hostile() {
              return make();
            });
            res.end();
          });
        },
        { tasks: { timeoutMs: 20 } },
      );
      await request(app).get('/').expect(200);
      await bg.idle();
      await new Promise((resolve) => setImmediate(resolve)); // a leaked rejection would be reported by now
      expect(bg.stats()).toMatchObject({ [outcome]: 1, pending: 0, running: 0 });
    });

    test('tasks settle and are counted while Promise.prototype.then is patched (as zone.js does)', async () => {
      const { app, bg } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          res.locals.backgroundTasks
            .add(async function resolves() {})
            .add(async function rejects() {
              throw new Error('patched');
            });
          res.end();
        });
      });
      const intrinsicThen = Promise.prototype.then;
      let patchedCalls = 0;
      Promise.prototype.then = function patchedThen(this: Promise<unknown>, ...args) {
        patchedCalls++;
        return intrinsicThen.apply(this, args as Parameters<typeof intrinsicThen>);
      } as typeof intrinsicThen;
      try {
        await request(app).get('/').expect(200);
        await bg.idle();
      } finally {
        Promise.prototype.then = intrinsicThen;
      }
      expect(patchedCalls).toBeGreaterThan(0);
      expect(bg.stats()).toMatchObject({ succeeded: 1, failed: 1, pending: 0, running: 0 });
    });

    test('a rejecting Promise subclass is settled as a failure', async () => {
      class Custom extends Promise<void> {}
      const { app, bg } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          res.locals.backgroundTasks.add(function subclassed() {
            return Custom.reject(new Error('custom'));
          });
          res.end();
        });
      });
      await request(app).get('/').expect(200);
      await bg.idle();
      await new Promise((resolve) => setImmediate(resolve));
      expect(bg.stats()).toMatchObject({ failed: 1, pending: 0, running: 0 });
    });

    test('the log keeps its fields and its constant message when the error message holds %s', async () => {
      const { app, bg, log } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          res.locals.backgroundTasks.add({
            name: 'format %s %d',
            run: () => {
              throw new Error('bad %s value %d %j');
            },
          });
          res.end();
        });
      });
      await request(app).get('/').expect(200);
      await bg.idle();
      const [record] = log.find(LOG_MESSAGES.taskFailed);
      expect(record).toMatchObject({
        task: 'format %s %d',
        error: { message: 'bad %s value %d %j' },
      });
      expect(record.error).toHaveProperty('stack', expect.stringContaining('bad %s value'));
    });

    test('the task name: the object form name, else the function name, else anonymous', async () => {
      const { app, bg, log } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          function namedFunction() {
            throw new Error('x');
          }
          res.locals.backgroundTasks
            .add({ name: 'explicit', run: namedFunction })
            .add(namedFunction)
            .add({ run: namedFunction })
            .add(
              (() => () => {
                throw new Error('x');
              })(),
            );
          res.end();
        });
      });
      await request(app).get('/').expect(200);
      await bg.idle();
      expect(log.find(LOG_MESSAGES.taskFailed).map((record) => record.task)).toEqual([
        'explicit',
        'namedFunction',
        'namedFunction',
        'anonymous',
      ]);
    });

    test('onTaskError is called once per failure, after logging', async () => {
      const seen: Array<{ failure: TaskFailure; loggedBefore: number }> = [];
      const testApp = makeApp(
        createExpress,
        (app) => {
          app.get('/', (_req, res) => {
            res.locals.backgroundTasks.add({
              name: 'flaky',
              run: () => Promise.reject(new Error('nope')),
            });
            res.end();
          });
        },
        {
          tasks: {
            onTaskError: (failure) =>
              void seen.push({
                failure,
                loggedBefore: testApp.log.find(LOG_MESSAGES.taskFailed).length,
              }),
          },
        },
      );
      await request(testApp.app).get('/').set('X-Request-Id', 'hook-1').expect(200);
      await testApp.bg.idle();
      expect(seen).toHaveLength(1);
      expect(seen[0].loggedBefore).toBe(1);
      expect(seen[0].failure).toMatchObject({
        task: 'flaky',
        attempt: 1,
        timedOut: false,
        request: { id: 'hook-1', method: 'GET', url: '/' },
      });
      expect(seen[0].failure.error).toBeInstanceOf(Error);
      expect(seen[0].failure.error.message).toBe('nope');
    });

    test.each([
      [
        'throws',
        () => {
          throw new Error('hook exploded');
        },
      ],
      ['rejects', () => Promise.reject(new Error('hook exploded'))],
    ])('an onTaskError that %s is caught and logged', async (_name, hook) => {
      const { app, bg, log } = makeApp(
        createExpress,
        (app) => {
          app.get('/', (_req, res) => {
            res.locals.backgroundTasks.add(() => {
              throw new Error('task failed');
            });
            res.locals.backgroundTasks.add(() => undefined);
            res.end();
          });
        },
        { tasks: { onTaskError: hook } },
      );
      await request(app).get('/').expect(200);
      await bg.idle();
      await new Promise((resolve) => setImmediate(resolve)); // a rejecting hook is reported a tick later
      expect(log.find(LOG_MESSAGES.hookFailed)).toEqual([
        expect.objectContaining({
          level: 'error',
          hook: 'onTaskError',
          error: expect.objectContaining({ message: 'hook exploded' }),
        }),
      ]);
      expect(bg.stats()).toMatchObject({ failed: 1, succeeded: 1 });
    });
  });

  describe('errors in the route', () => {
    test('tasks queued before the route threw still run, beside the notifier', async () => {
      const events: string[] = [];
      const { app, bg } = makeApp(
        createExpress,
        (app) => {
          app.get('/', (_req, res) => {
            res.locals.backgroundTasks.add(() => events.push('queued by route'));
            throw createError(500, 'Something went wrong');
          });
        },
        { errors: { notify: (err) => void events.push(`notified: ${err.message}`) } },
      );
      await request(app).get('/').expect(500, 'Internal Server Error');
      await bg.idle();
      expect(events).toEqual(['queued by route', 'notified: Something went wrong']);
    });

    test("clear() in an override keeps the failed route's tasks from running", async () => {
      const events: string[] = [];
      const { app, bg } = makeApp(
        createExpress,
        (app) => {
          app.get('/', (_req, res) => {
            res.locals.backgroundTasks
              .add(() => events.push('queued by route'))
              .add(() => events.push('also'));
            throw createError(409, 'conflict');
          });
        },
        {
          errors: {
            overrides: [
              {
                match: 409,
                handle: (err, _req, res, tasks) => {
                  events.push(`cleared ${tasks.clear()}`);
                  tasks.add(() => events.push('queued by override'));
                  res.status(409).type('text').send(err.message);
                },
              },
            ],
          },
        },
      );
      await request(app).get('/').expect(409, 'conflict');
      await bg.idle();
      expect(events).toEqual(['cleared 2', 'queued by override']);
      expect(bg.stats()).toMatchObject({ pending: 0, succeeded: 1 });
    });
  });

  describe('async context', () => {
    test('AsyncLocalStorage values of the request are visible in every task', async () => {
      const als = new AsyncLocalStorage<{ user: string }>();
      // [the request's user, what the task's store says]
      const seen: Array<[string, string | undefined]> = [];
      const { app, bg } = makeApp(createExpress, (app) => {
        app.use((req, _res, next) => als.run({ user: String(req.query.user) }, next));
        app.get('/', (req, res) => {
          const user = String(req.query.user);
          res.locals.backgroundTasks
            .add(async () => {
              await new Promise((resolve) => setImmediate(resolve));
              seen.push([user, als.getStore()?.user]);
            })
            .add({ run: () => void seen.push([user, als.getStore()?.user]) });
          res.end();
        });
      });
      await Promise.all(
        ['ann', 'bob', 'cyd'].map((user) => request(app).get(`/?user=${user}`).expect(200)),
      );
      await bg.idle();
      expect(seen).toHaveLength(6);
      for (const [user, stored] of seen) expect(stored).toBe(user);
    });

    test("a task added late, from outside the request's async context, still runs in the request's", async () => {
      const als = new AsyncLocalStorage<string>();
      const seen: Array<string | undefined> = [];
      let queue: BackgroundTasks | undefined;
      const { app, bg } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          als.run('request-42', () => {
            queue = res.locals.backgroundTasks;
            queue.add(() => void seen.push(als.getStore()));
            res.end();
          });
        });
      });
      await request(app).get('/').expect(200);
      await bg.idle();
      expect(als.getStore()).toBeUndefined();
      queue!.add(() => void seen.push(als.getStore())); // from the test's own context, which has no store
      await bg.idle();
      expect(seen).toEqual(['request-42', 'request-42']);
    });

    test('the context holds when a task waits in line for a slot', async () => {
      const als = new AsyncLocalStorage<string>();
      const seen: Array<[string, string | undefined]> = [];
      const { app, bg } = makeApp(
        createExpress,
        (app) => {
          app.get('/:user', (req, res) => {
            als.run(req.params.user, () => {
              res.locals.backgroundTasks.add(async (user: string) => {
                await new Promise((resolve) => setImmediate(resolve));
                seen.push([user, als.getStore()]);
              }, req.params.user);
              res.end();
            });
          });
        },
        { tasks: { concurrency: 1 } },
      );
      await Promise.all(
        ['a', 'b', 'c', 'd'].map((user) => request(app).get(`/${user}`).expect(200)),
      );
      await bg.idle();
      expect(seen).toHaveLength(4);
      for (const [user, store] of seen) expect(store).toBe(user);
    });
  });

  describe('client aborts', () => {
    test('tasks still run, and see ctx.request.aborted', async () => {
      const { server, abortedRequest, bg } = await abortingServer(createExpress, {});
      try {
        const requests = await abortedRequest();
        await bg.idle();
        expect(requests).toEqual([
          expect.objectContaining({ aborted: true, method: 'GET', url: '/slow' }),
        ]);
        expect(bg.stats()).toMatchObject({ succeeded: 1, rejected: 0 });
      } finally {
        server.close();
      }
    });

    test('with runOnAbort: false they are not run, but counted as rejected and logged', async () => {
      const { server, abortedRequest, bg, log } = await abortingServer(createExpress, {
        runOnAbort: false,
      });
      try {
        const requests = await abortedRequest();
        await bg.idle();
        expect(requests).toEqual([]);
        expect(bg.stats()).toMatchObject({ succeeded: 0, rejected: 1, pending: 0 });
        expect(log.find(LOG_MESSAGES.taskRejected)).toEqual([
          expect.objectContaining({
            level: 'warn',
            task: 'record',
            reason: 'client aborted',
            url: '/slow',
          }),
        ]);
      } finally {
        server.close();
      }
    });
  });
});

/** A server whose route queues a task and never answers; the client hangs up once the task is queued. */
async function abortingServer(
  createExpress: () => import('express').Express,
  tasks: { runOnAbort?: boolean },
) {
  const queued = gate();
  const seen: TaskContext['request'][] = [];
  const { app, bg, log } = makeApp(
    createExpress,
    (app) => {
      app.get('/slow', (_req, res) => {
        res.locals.backgroundTasks.add({
          name: 'record',
          run: (ctx) => void seen.push(ctx.request),
        });
        queued.open();
      });
    },
    { tasks },
  );
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const abortedRequest = async () => {
    const closed = new Promise<void>((resolve) => {
      const client = http.get({ host: '127.0.0.1', port, path: '/slow' });
      client.on('error', () => resolve());
      void queued.promise.then(() => client.destroy());
    });
    await closed;
    // The task is pending from add(): idle() waits until the server has seen the hang-up and dealt with it.
    await bg.idle();
    return seen;
  };
  return { server, abortedRequest, bg, log };
}
