/**
 * Durable tasks across processes: the web app (this process) hands defined tasks to BullMQ on a
 * real redis-server, and worker child processes run them. Covers the hand-off itself, tasks
 * queued while no worker runs, a worker killed mid-job, and two workers sharing one queue.
 */
import express from 'express';
import { Queue } from 'bullmq';
import request from 'supertest';
import { LOG_MESSAGES } from '../lib';
import { bullmqDurable } from '../lib/bullmq';
import { makeApp } from './support/apps';
import { recordTask, stallTask } from './support/durable-tasks';
import { pollUntil, startRedis, type RedisServer } from './support/redis';
import {
  collect,
  killAllWorkers,
  spawnWorker,
  type ChildEvent,
  type WorkerChild,
} from './support/worker-child';

let redis: RedisServer;
const closing: Array<{ close(): Promise<unknown> }> = [];

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await killAllWorkers();
  await Promise.all(closing.map((item) => item.close()));
  await redis?.stop();
});

/** A web app whose defined tasks go to `queueName`: POST /record/:id and /stall/:id add one task each. */
function webApp(queueName: string) {
  const durable = track(bullmqDurable({ connection: { url: redis.url }, queueName }));
  const test = makeApp(
    express,
    (app) => {
      app.post('/record/:id', (req, res) => {
        const ms = req.query.ms === undefined ? undefined : Number(req.query.ms);
        res.locals.backgroundTasks.add(recordTask, { id: req.params.id, ms });
        res.status(202).end();
      });
      app.post('/stall/:id', (req, res) => {
        res.locals.backgroundTasks.add(stallTask, { id: req.params.id });
        res.status(202).end();
      });
    },
    { tasks: { durable } },
  );
  return { ...test, durable };
}

function inspect(queueName: string): Queue {
  return track(new Queue(queueName, { connection: { url: redis.url } }));
}

function track<T extends { close(): Promise<unknown> }>(item: T): T {
  closing.push(item);
  return item;
}

const ran = (event: ChildEvent) => event.event === 'ran';
const idsOf = (events: ChildEvent[]) => events.map((event) => (event as { id: string }).id).sort();

describe('with two workers on one queue', () => {
  const queueName = 'shared';
  let workers: WorkerChild[];

  beforeAll(async () => {
    workers = await Promise.all([
      spawnWorker({ redisUrl: redis.url, queueName, concurrency: 2 }),
      spawnWorker({ redisUrl: redis.url, queueName, concurrency: 2 }),
    ]);
  });

  afterAll(async () => {
    await Promise.all(workers.map((worker) => worker.stop()));
  });

  test("a request's defined task runs in a worker process, with the request's id", async () => {
    const { app, bg } = webApp(queueName);
    await request(app).post('/record/welcome').set('X-Request-Id', 'signup-42').expect(202);
    const [event] = await collect(workers, (e) => ran(e) && e.id === 'welcome', 1);
    expect(event).toMatchObject({ task: 'record', requestId: 'signup-42', attempt: 1 });
    expect(workers.map((worker) => worker.pid)).toContain(event.pid);
    expect(event.pid).not.toBe(process.pid);
    await bg.idle();
    expect(bg.stats()).toMatchObject({ enqueued: 1, succeeded: 0, pending: 0, running: 0 });
  });

  test('every job runs exactly once, and both workers take jobs', async () => {
    const { app, bg } = webApp(queueName);
    const queue = inspect(queueName);
    const before = (await queue.getJobCounts('completed')).completed;
    const ids = Array.from({ length: 30 }, (_, i) => `job-${i}`);
    // Each job takes 50 ms, so two slots per worker cannot take them all: both workers must work.
    for (const id of ids) await request(app).post(`/record/${id}?ms=50`).expect(202);
    await bg.idle();
    expect(bg.stats().enqueued).toBe(30);
    const runs = await collect(workers, (e) => ran(e) && ids.includes(e.id as string), 30);
    await pollUntil(
      async () => (await queue.getJobCounts('completed')).completed === before + 30,
      '30 completed jobs',
    );
    expect(await queue.getJobCounts('wait', 'active', 'delayed', 'failed')).toEqual({
      wait: 0,
      active: 0,
      delayed: 0,
      failed: 0,
    });
    // Nothing is left that could run again, and nothing ran twice.
    expect(
      workers.flatMap((worker) =>
        worker.events.filter((e) => ran(e) && ids.includes(e.id as string)),
      ),
    ).toHaveLength(30);
    expect(idsOf(runs)).toEqual([...ids].sort());
    const pids = new Set(runs.map((event) => event.pid));
    expect(pids).toEqual(new Set(workers.map((worker) => worker.pid)));
  });
});

test('tasks enqueued while no worker runs all run once one starts, across restarts of the web app and of the workers', async () => {
  const queueName = 'offline';
  const enqueue = async (ids: string[]) => {
    // A fresh web app each time: a restarted web process.
    const { app, bg, durable } = webApp(queueName);
    for (const id of ids) await request(app).post(`/record/${id}`).expect(202);
    await bg.idle();
    expect(bg.stats()).toMatchObject({ enqueued: ids.length, succeeded: 0 });
    await durable.close();
  };
  const first = ['a1', 'a2', 'a3', 'a4'];
  const second = ['b1', 'b2', 'b3', 'b4'];
  const third = ['c1', 'c2', 'c3', 'c4'];
  await enqueue(first);
  await enqueue(second);
  const queue = inspect(queueName);
  expect(await queue.getJobCounts('wait')).toEqual({ wait: 8 });

  const worker = await spawnWorker({ redisUrl: redis.url, queueName });
  expect(idsOf(await collect([worker], ran, 8))).toEqual([...first, ...second].sort());
  await worker.stop();

  await enqueue(third);
  expect(await queue.getJobCounts('wait')).toEqual({ wait: 4 });
  const restarted = await spawnWorker({ redisUrl: redis.url, queueName });
  expect(idsOf(await collect([restarted], ran, 4))).toEqual(third);
  await restarted.stop();
  expect(idsOf(worker.events.filter(ran))).toEqual([...first, ...second].sort());
  expect(idsOf(restarted.events.filter(ran))).toEqual(third);
});

test('a job whose worker is killed (SIGKILL) mid-run is run again by another worker', async () => {
  const queueName = 'killed';
  // Short locks so that the stalled job is noticed in about a second rather than 30 s.
  const workerOptions = { lockDuration: 1_000, stalledInterval: 500 };
  const doomed = await spawnWorker({ redisUrl: redis.url, queueName, workerOptions, hang: true });
  const { app, bg } = webApp(queueName);
  await request(app).post('/stall/payment-7').set('X-Request-Id', 'checkout-7').expect(202);
  await bg.idle();
  await doomed.next((e) => e.event === 'started' && e.id === 'payment-7', 'the job to start');
  await doomed.kill();

  const rescuer = await spawnWorker({ redisUrl: redis.url, queueName, workerOptions });
  const rerun = await rescuer.next((e) => ran(e) && e.id === 'payment-7', 'the job to run again');
  expect(rerun).toMatchObject({ task: 'stall', requestId: 'checkout-7', pid: rescuer.pid });
  // The killed run counts: ctx.attempt is the number of starts (BullMQ's attemptsStarted).
  expect(rerun.attempt).toBe(2);
  await rescuer.next(
    (e) => e.event === 'log' && e.message === LOG_MESSAGES.jobStalled,
    'the stall to be logged',
  );
  expect(doomed.events.filter(ran)).toEqual([]);
  await rescuer.stop();
});
