/**
 * defineTask() and the `durable` option from the web app's side: what a hand-off stores in
 * BullMQ, what stats() counts, payloads refused at add(), defined tasks run in-process when
 * there is no durable queue, and the main entry point loading neither bullmq nor ioredis.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import express from 'express';
import { Queue } from 'bullmq';
import request from 'supertest';
import { LOG_MESSAGES, TaskTimeoutError, defineTask, type DefinedTask } from '../lib';
import { bullmqDurable } from '../lib/bullmq';
import { makeApp, type TestAppOptions } from './support/apps';
import { startRedis, type RedisServer } from './support/redis';

let redis: RedisServer;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

/** An app whose POST / adds `task` with the payload `payloadOf()` gives, and answers 400 with add()'s TypeError if it throws. */
function appAdding<P>(
  task: DefinedTask<P>,
  payloadOf: () => P,
  tasks: TestAppOptions['tasks'] = {},
) {
  return makeApp(
    express,
    (app) =>
      app.post('/', (_req, res) => {
        try {
          res.locals.backgroundTasks.add(task, payloadOf());
        } catch (error) {
          res.status(400).json({ name: (error as Error).name, message: (error as Error).message });
          return;
        }
        res.status(202).end();
      }),
    { tasks },
  );
}

const sendWelcome = defineTask(
  'send-welcome',
  (_payload: { email: string; tags: string[] }) => undefined,
  {
    retries: 3,
    retryDelayMs: 250,
    timeoutMs: 10_000,
  },
);

describe('with a BullMQ durable queue', () => {
  const queueName = 'durable-tests';
  let queue: Queue;
  const durable = () => bullmqDurable({ connection: { url: redis.url }, queueName });

  beforeAll(() => {
    queue = new Queue(queueName, { connection: { url: redis.url } });
  });

  afterAll(async () => {
    await queue.close();
  });

  test('a hand-off stores one job named after the task, with the payload, the request and the retry policy', async () => {
    const queued = durable();
    const { app, bg } = appAdding(
      sendWelcome,
      () => ({ email: 'ann@example.com', tags: ['new'] }),
      { durable: queued },
    );
    await request(app).post('/?ref=mail').set('X-Request-Id', 'welcome-1').expect(202);
    await bg.idle();
    expect(bg.stats()).toMatchObject({ enqueued: 1, pending: 0, running: 0, succeeded: 0 });
    const jobs = await queue.getWaiting();
    expect(jobs).toHaveLength(1);
    const [job] = jobs;
    expect(job.name).toBe('send-welcome');
    expect(job.data).toEqual({
      payload: { email: 'ann@example.com', tags: ['new'] },
      request: {
        id: 'welcome-1',
        method: 'POST',
        url: '/?ref=mail',
        statusCode: 202,
        aborted: false,
      },
    });
    expect(job.opts).toMatchObject({
      attempts: 4,
      backoff: { type: 'exponential', delay: 250 },
      removeOnComplete: { age: 86_400, count: 1_000 },
      removeOnFail: false,
    });
    await queue.drain();
    await queued.close();
  });

  test('stats().enqueued counts every hand-off; other tasks of the same request still run here', async () => {
    const queued = durable();
    const ranHere: string[] = [];
    const { app, bg } = makeApp(
      express,
      (app) =>
        app.post('/', (_req, res) => {
          res.locals.backgroundTasks
            .add(sendWelcome, { email: 'a@example.com', tags: [] })
            .add(() => void ranHere.push('plain function'))
            .add(sendWelcome, { email: 'b@example.com', tags: [] })
            .add(sendWelcome, { email: 'c@example.com', tags: [] });
          res.status(202).end();
        }),
      { tasks: { durable: queued } },
    );
    await request(app).post('/').expect(202);
    await request(app).post('/').expect(202);
    await bg.idle();
    expect(bg.stats()).toMatchObject({ enqueued: 6, succeeded: 2, pending: 0, failed: 0 });
    expect(ranHere).toEqual(['plain function', 'plain function']);
    expect(await queue.getJobCounts('wait')).toEqual({ wait: 6 });
    await queue.drain();
    await queued.close();
  });

  class Point {
    constructor(readonly x: number) {}
  }
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  test.each<[string, unknown, RegExp]>([
    ['a function', { email: () => 'x' }, /payload\.email is a function/],
    ['a symbol', { email: Symbol('x') }, /payload\.email is a symbol/],
    ['a BigInt', { count: 10n }, /payload\.count is a bigint/],
    ['a cycle', cycle, /payload\.self is a cycle/],
    ['a Date', { at: new Date(0) }, /payload\.at is a Date, not a plain object/],
    ['a Map', { seen: new Map() }, /payload\.seen is a Map, not a plain object/],
    ['a class instance', { where: new Point(1) }, /payload\.where is a Point, not a plain object/],
    ['NaN', { score: NaN }, /payload\.score is NaN/],
    ['Infinity in an array', { scores: [1, Infinity] }, /payload\.scores\[1\] is Infinity/],
  ])(
    'a payload holding %s is refused at add() with a TypeError, and nothing is queued',
    async (_name, payload, message) => {
      const queued = durable();
      const loose = sendWelcome as unknown as DefinedTask<unknown>;
      const { app, bg } = appAdding(loose, () => payload, { durable: queued });
      const response = await request(app).post('/').expect(400);
      expect(response.body.name).toBe('TypeError');
      expect(response.body.message).toMatch(
        /^add\(\): the payload of task "send-welcome" does not survive JSON: /,
      );
      expect(response.body.message).toMatch(message);
      await bg.idle();
      expect(bg.stats()).toMatchObject({ enqueued: 0, pending: 0, succeeded: 0 });
      expect(await queue.getJobCounts('wait')).toEqual({ wait: 0 });
      await queued.close();
    },
  );
});

describe('without a durable queue, a defined task runs in-process like any other', () => {
  test('with its payload and a ctx: the request, attempt and signal', async () => {
    const seen: unknown[] = [];
    const greet = defineTask('greet', (payload: { name: string }, ctx) => {
      seen.push({
        payload,
        attempt: ctx.attempt,
        requestId: ctx.request.id,
        aborted: ctx.signal.aborted,
      });
    });
    const { app, bg } = appAdding(greet, () => ({ name: 'Ann' }));
    await request(app).post('/').set('X-Request-Id', 'greet-1').expect(202);
    await bg.idle();
    expect(seen).toEqual([
      { payload: { name: 'Ann' }, attempt: 1, requestId: 'greet-1', aborted: false },
    ]);
    expect(bg.stats()).toMatchObject({ succeeded: 1, enqueued: 0 });
  });

  test('the payload is the JSON copy taken at add(): later changes by the route do not reach the task', async () => {
    const seen: unknown[] = [];
    const keep = defineTask('keep', (payload: { tags: string[] }) => void seen.push(payload));
    const payload = { tags: ['a'] };
    const { app, bg } = makeApp(express, (app) =>
      app.post('/', (_req, res) => {
        res.locals.backgroundTasks.add(keep, payload);
        payload.tags.push('changed after add');
        res.end();
      }),
    );
    await request(app).post('/').expect(200);
    await bg.idle();
    expect(seen).toEqual([{ tags: ['a'] }]);
  });

  test("with the definition's retries and the runner's log lines", async () => {
    const attempts: number[] = [];
    const flaky = defineTask(
      'flaky-here',
      (_payload: null, ctx) => {
        attempts.push(ctx.attempt);
        if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} failed`);
      },
      { retries: 2, retryDelayMs: 1 },
    );
    const { app, bg, log } = appAdding(flaky, () => null);
    await request(app).post('/').set('X-Request-Id', 'flaky-1').expect(202);
    await bg.idle();
    expect(attempts).toEqual([1, 2, 3]);
    expect(
      log.find(LOG_MESSAGES.taskRetrying).map((line) => [line.task, line.attempt, line.requestId]),
    ).toEqual([
      ['flaky-here', 1, 'flaky-1'],
      ['flaky-here', 2, 'flaky-1'],
    ]);
    expect(log.find(LOG_MESSAGES.taskFailed)).toEqual([]);
    expect(bg.stats()).toMatchObject({ succeeded: 1, failed: 0, enqueued: 0 });
  });

  test("with the definition's timeout: the signal aborts with TaskTimeoutError and the failure is logged", async () => {
    const reasons: unknown[] = [];
    const stuck = defineTask(
      'stuck',
      async (_payload: null, ctx) => {
        await new Promise((resolve) =>
          ctx.signal.addEventListener('abort', resolve, { once: true }),
        );
        reasons.push(ctx.signal.reason);
      },
      { timeoutMs: 20 },
    );
    const { app, bg, log } = appAdding(stuck, () => null, { timeoutMs: 60_000 });
    await request(app).post('/').expect(202);
    await bg.idle();
    expect(reasons).toEqual([expect.any(TaskTimeoutError)]);
    expect(log.find(LOG_MESSAGES.taskFailed)).toEqual([
      expect.objectContaining({
        task: 'stuck',
        timedOut: true,
        attempt: 1,
        error: expect.objectContaining({ name: 'TaskTimeoutError' }),
      }),
    ]);
    expect(bg.stats()).toMatchObject({ timedOut: 1, enqueued: 0 });
  });

  test('a payload that does not survive JSON is refused at add() all the same', async () => {
    const { app, bg } = appAdding(sendWelcome as unknown as DefinedTask<unknown>, () => ({
      at: new Date(),
    }));
    const response = await request(app).post('/').expect(400);
    expect(response.body).toEqual({
      name: 'TypeError',
      message: expect.stringMatching(/payload\.at is a Date/),
    });
    expect(bg.stats()).toMatchObject({ pending: 0, succeeded: 0 });
  });
});

describe('entry points', () => {
  const run = promisify(execFile);
  const root = path.join(__dirname, '..');
  /** The bullmq and ioredis files a fresh Node process has loaded after requiring `entry`. */
  async function loadedBy(entry: string): Promise<string[]> {
    const script = `require(${JSON.stringify(entry)});
      const pattern = /[\\\\/]node_modules[\\\\/](bullmq|ioredis)[\\\\/]/;
      console.log(JSON.stringify(Object.keys(require.cache).filter((file) => pattern.test(file))));`;
    const { stdout } = await run(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', '-e', script],
      { cwd: root },
    );
    return JSON.parse(stdout) as string[];
  }

  test("require('express-background-tasks') loads neither bullmq nor ioredis; the bullmq entry point loads both", async () => {
    const [main, bullmq] = await Promise.all([
      loadedBy('./lib/index.ts'),
      loadedBy('./lib/bullmq/index.ts'),
    ]);
    expect(main).toEqual([]);
    // The check can see them: the other entry point does load them.
    expect(bullmq.some((file) => file.includes(`${path.sep}bullmq${path.sep}`))).toBe(true);
    expect(bullmq.some((file) => file.includes(`${path.sep}ioredis${path.sep}`))).toBe(true);
  });
});
