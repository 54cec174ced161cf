/**
 * startWorker(), run in this process against a real redis-server: retries through BullMQ with
 * the runner's log lines, timeouts, jobs for unknown tasks, onTaskError, and the checks that
 * reject bad options of startWorker() and bullmqDurable() before anything connects.
 */
import express from 'express';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import request from 'supertest';
import { LOG_MESSAGES, TaskTimeoutError, defineTask, type TaskFailure } from '../lib';
import { bullmqDurable, startWorker, type DurableWorker } from '../lib/bullmq';
import { makeApp } from './support/apps';
import { captureLogger } from './support/capture';
import { recordTask } from './support/durable-tasks';
import { startRedis, type RedisServer } from './support/redis';

const attemptsSeen: Record<string, number[]> = {};
const saw = (name: string, attempt: number) => (attemptsSeen[name] ??= []).push(attempt);
const signalReasons: unknown[] = [];

const flaky = defineTask(
  'flaky',
  (_payload: null, ctx) => {
    saw('flaky', ctx.attempt);
    if (ctx.attempt < 3) throw new Error(`flaky attempt ${ctx.attempt}`);
  },
  { retries: 3, retryDelayMs: 10 },
);
const broken = defineTask(
  'broken',
  async (_payload: null, ctx) => {
    saw('broken', ctx.attempt);
    throw new Error('always broken');
  },
  { retries: 2, retryDelayMs: 10 },
);
const slow = defineTask(
  'slow',
  async (_payload: null, ctx) => {
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
    signalReasons.push(ctx.signal.reason);
  },
  { timeoutMs: 100 },
);
/** Ignores its signal and never ends: the attempt must still fail on time. */
const deaf = defineTask('deaf', () => new Promise(() => undefined), { timeoutMs: 100 });
/** Defined in the web app only: no worker knows it. */
const orphan = defineTask('orphan', () => undefined, { retries: 3 });

const TASKS = { flaky, broken, slow, deaf, orphan } as const;

let redis: RedisServer;
let durableWorker: DurableWorker;
let queue: Queue;
const workerLog = captureLogger();
const failures: TaskFailure[] = [];

beforeAll(async () => {
  redis = await startRedis();
  queue = new Queue('worker-tests', { connection: { url: redis.url } });
  durableWorker = startWorker({
    connection: { url: redis.url },
    queueName: 'worker-tests',
    tasks: [flaky, broken, slow, deaf, recordTask],
    logger: workerLog.logger,
    onTaskError: (failure) => void failures.push(failure),
  });
  await durableWorker.worker.waitUntilReady();
});

afterAll(async () => {
  await durableWorker?.close();
  await queue?.close();
  await redis?.stop();
});

/** Adds the task through a request, and resolves with its job once BullMQ has finished it (completed, or failed for good). */
async function runThroughWorker(name: keyof typeof TASKS, requestId: string): Promise<Job> {
  const durable = bullmqDurable({ connection: { url: redis.url }, queueName: 'worker-tests' });
  const { app, bg } = makeApp(
    express,
    (app) =>
      app.post('/', (_req, res) => {
        res.locals.backgroundTasks.add(TASKS[name] as typeof flaky, null);
        res.status(202).end();
      }),
    { tasks: { durable } },
  );
  const { worker } = durableWorker;
  const finished = new Promise<Job>((resolve) => {
    const onCompleted = (job: Job) => job.name === name && done(job);
    const onFailed = (job: Job | undefined) =>
      job?.name === name && job.finishedOn !== undefined && done(job);
    const done = (job: Job) => {
      worker.off('completed', onCompleted).off('failed', onFailed);
      resolve(job);
    };
    worker.on('completed', onCompleted).on('failed', onFailed);
  });
  await request(app).post('/').set('X-Request-Id', requestId).expect(202);
  await bg.idle();
  expect(bg.stats()).toMatchObject({ enqueued: 1, succeeded: 0, failed: 0 });
  await durable.close();
  return finished;
}

const linesFor = (message: string, task: string) =>
  workerLog.find(message).filter((record) => record.task === task);

test('a task that fails twice then succeeds is retried by BullMQ, each failed attempt logged at warn', async () => {
  const job = await runThroughWorker('flaky', 'req-flaky');
  expect(await job.getState()).toBe('completed');
  expect(attemptsSeen.flaky).toEqual([1, 2, 3]);
  const warns = linesFor(LOG_MESSAGES.taskRetrying, 'flaky');
  expect(warns.map((line) => [line.level, line.attempt, line.retryInMs])).toEqual([
    ['warn', 1, 10],
    ['warn', 2, 20],
  ]);
  expect(warns[0]).toMatchObject({
    requestId: 'req-flaky',
    jobId: job.id,
    timedOut: false,
    error: { message: 'flaky attempt 1' },
  });
  expect(linesFor(LOG_MESSAGES.taskFailed, 'flaky')).toEqual([]);
});

test('a task that always fails: warn for each retried attempt, one error line, the job left in the failed set', async () => {
  const job = await runThroughWorker('broken', 'req-broken');
  expect(attemptsSeen.broken).toEqual([1, 2, 3]);
  expect(linesFor(LOG_MESSAGES.taskRetrying, 'broken').map((line) => line.attempt)).toEqual([1, 2]);
  const errors = linesFor(LOG_MESSAGES.taskFailed, 'broken');
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatchObject({
    level: 'error',
    task: 'broken',
    requestId: 'req-broken',
    method: 'POST',
    url: '/',
    statusCode: 202,
    attempt: 3,
    timedOut: false,
    jobId: job.id,
    error: { name: 'Error', message: 'always broken' },
  });
  expect(typeof errors[0].durationMs).toBe('number');
  expect(await queue.getJobState(job.id!)).toBe('failed');
  expect((await queue.getFailed()).map((failed) => failed.id)).toContain(job.id);
  expect(failures.filter((failure) => failure.task === 'broken')).toEqual([
    expect.objectContaining({
      attempt: 3,
      jobId: job.id,
      timedOut: false,
      request: expect.objectContaining({ id: 'req-broken' }),
    }),
  ]);
});

test('a timed-out task has its signal aborted with TaskTimeoutError and fails as timed out', async () => {
  const job = await runThroughWorker('slow', 'req-slow');
  expect(await job.getState()).toBe('failed');
  expect(signalReasons).toHaveLength(1);
  expect(signalReasons[0]).toBeInstanceOf(TaskTimeoutError);
  expect(linesFor(LOG_MESSAGES.taskFailed, 'slow')).toEqual([
    expect.objectContaining({
      timedOut: true,
      attempt: 1,
      error: expect.objectContaining({
        name: 'TaskTimeoutError',
        message: 'task timed out after 100 ms',
      }),
    }),
  ]);
});

test('a task that ignores its signal still fails on time: the worker does not wait for it', async () => {
  const started = Date.now();
  const job = await runThroughWorker('deaf', 'req-deaf');
  expect(await job.getState()).toBe('failed');
  expect(Date.now() - started).toBeLessThan(5_000);
  expect(linesFor(LOG_MESSAGES.taskFailed, 'deaf')).toEqual([
    expect.objectContaining({ timedOut: true }),
  ]);
});

test('a job for a task this worker does not know fails once, logged, without retries', async () => {
  const job = await runThroughWorker('orphan', 'req-orphan');
  expect(await job.getState()).toBe('failed');
  expect(job.attemptsMade).toBe(1);
  expect(linesFor(LOG_MESSAGES.taskRetrying, 'orphan')).toEqual([]);
  const errors = linesFor(LOG_MESSAGES.taskFailed, 'orphan');
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatchObject({
    requestId: 'req-orphan',
    jobId: job.id,
    error: { name: 'UnrecoverableError' },
  });
  expect((errors[0].error as { message: string }).message).toMatch(
    /no task named "orphan" is defined in this worker \(it runs: flaky, broken, slow, deaf, record\)/,
  );
});

test("the worker's stats() count what ended on it, by outcome (the five jobs above), with nothing pending", () => {
  // flaky succeeded after two retries; broken and orphan failed; slow and deaf timed out.
  expect(durableWorker.stats()).toEqual({
    pending: 0,
    running: 0,
    succeeded: 1,
    failed: 2,
    timedOut: 2,
    rejected: 0,
    abandoned: 0,
    enqueued: 0,
    leftToWorkers: 0,
    logRecordsDropped: 0,
  });
});

describe('options are checked when created, before any connection', () => {
  const connection = { url: 'redis://127.0.0.1:1' };
  const tasks = [flaky];

  test.each([
    ['no options', undefined, /option "connection" must be an object/],
    ['no connection', { queueName: 'q' }, /option "connection" must be an object/],
    ['an unknown option', { connection, retries: 3 }, /unknown option "retries"/],
    [
      'a non-Redis URL',
      { connection: { url: 'http://127.0.0.1' } },
      /"connection.url" must be a redis:\/\/ or rediss:\/\/ URL/,
    ],
    [
      'an ioredis keyPrefix',
      { connection: { ...connection, keyPrefix: 'app:' } },
      /keyPrefix.*use the "prefix" option/,
    ],
    [
      'a queue name with ":"',
      { connection, queueName: 'a:b' },
      /"queueName" must be a non-empty string without ":"/,
    ],
    ['an empty prefix', { connection, prefix: '' }, /"prefix" must be a non-empty string/],
    ['a bad logger', { connection, logger: { info() {} } }, /"logger" must be a winston Logger/],
    [
      'a zero enqueue timeout',
      { connection, enqueueTimeoutMs: 0 },
      /"enqueueTimeoutMs" must be an integer from 1/,
    ],
    [
      'a bad removeOnComplete',
      { connection, removeOnComplete: { age: -1 } },
      /"removeOnComplete" must be a boolean, a count/,
    ],
    [
      'a bad removeOnFail',
      { connection, removeOnFail: 'never' },
      /"removeOnFail" must be a boolean, a count/,
    ],
  ])('bullmqDurable() with %s throws a TypeError', (_name, options, message) => {
    expect(() => bullmqDurable(options as never)).toThrow(TypeError);
    expect(() => bullmqDurable(options as never)).toThrow(message);
  });

  test('bullmqDurable() takes a Redis client as no connection, and never shows the URL (it may hold a password)', () => {
    const client = new Redis({ lazyConnect: true });
    expect(() => bullmqDurable({ connection: client as never })).toThrow(
      /connection options, not a Redis client/,
    );
    expect(() => bullmqDurable({ connection: { url: 'http://user:secret@host' } })).toThrow(
      /^(?![\s\S]*secret)/, // on no line of the message
    );
  });

  const twin = defineTask('flaky', () => undefined);
  test.each([
    ['no tasks', { connection }, /option "tasks" must be a non-empty array/],
    ['an empty task list', { connection, tasks: [] }, /option "tasks" must be a non-empty array/],
    [
      'a plain function among the tasks',
      { connection, tasks: [flaky, () => undefined] },
      /"tasks" must be an array of defineTask\(\) tasks only/,
    ],
    [
      'two tasks with one name',
      { connection, tasks: [flaky, twin] },
      /two tasks are named "flaky"; task names must be unique/,
    ],
    [
      'a zero concurrency',
      { connection, tasks, concurrency: 0 },
      /"concurrency" must be an integer from 1/,
    ],
    [
      'a negative timeout',
      { connection, tasks, timeoutMs: -1 },
      /"timeoutMs" must be an integer from 0/,
    ],
    [
      'a bad onTaskError',
      { connection, tasks, onTaskError: 'log' },
      /"onTaskError" must be a function/,
    ],
    [
      'workerOptions that are not an object',
      { connection, tasks, workerOptions: 5 },
      /"workerOptions" must be an object/,
    ],
    [
      'a connection in workerOptions',
      { connection, tasks, workerOptions: { connection } },
      /workerOptions.connection is set by startWorker\(\)/,
    ],
    [
      'a concurrency in workerOptions',
      { connection, tasks, workerOptions: { concurrency: 2 } },
      /workerOptions.concurrency is set by startWorker\(\)/,
    ],
    ['an unknown option', { connection, tasks, lockDuration: 5 }, /unknown option "lockDuration"/],
  ])('startWorker() with %s throws a TypeError', (_name, options, message) => {
    expect(() => startWorker(options as never)).toThrow(TypeError);
    expect(() => startWorker(options as never)).toThrow(message);
  });
});
