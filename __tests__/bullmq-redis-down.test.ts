/**
 * Redis going away under a running web app, and a worker: requests still get their responses,
 * each failed enqueue is logged and its task runs in-process, the outage is logged once, and
 * enqueues (and the worker's jobs) resume when Redis is back. Real redis-server, stopped for real;
 * and a server that accepts connections but never answers, for the enqueue timeout.
 */
import net from 'node:net';
import express from 'express';
import request from 'supertest';
import { LOG_MESSAGES } from '../lib';
import { bullmqDurable, startWorker, type BullmqDurable } from '../lib/bullmq';
import { makeApp, type TestApp } from './support/apps';
import { captureLogger, type CapturedLogger } from './support/capture';
import { recordTask, runs, type RunEvent } from './support/durable-tasks';
import { pollUntil, startRedis, type RedisServer } from './support/redis';

let redis: RedisServer;
const seen: RunEvent[] = [];
const onRun = (run: RunEvent) => seen.push(run);

beforeAll(async () => {
  redis = await startRedis();
  runs.on('run', onRun);
});

afterAll(async () => {
  runs.off('run', onRun);
  await redis?.stop();
});

/** Reconnects every 50 ms, so that the test sees Redis come back without waiting out a long backoff. */
const connectionOf = (url: string) => ({ url, retryStrategy: () => 50 });

function webApp(durable: BullmqDurable): TestApp {
  return makeApp(
    express,
    (app) =>
      app.post('/record/:id', (req, res) => {
        res.locals.backgroundTasks.add(recordTask, { id: req.params.id });
        res.status(202).json({ queued: req.params.id });
      }),
    { tasks: { durable } },
  );
}

const ranHere = (id: string) => seen.filter((run) => run.id === id && run.pid === process.pid);

test('Redis stopped while the app runs: responses still go out, each enqueue failure is logged and its task runs in-process', async () => {
  const durableLog = captureLogger();
  const durable = bullmqDurable({
    connection: connectionOf(redis.url),
    queueName: 'down',
    logger: durableLog.logger,
  });
  const { app, bg, log } = webApp(durable);
  try {
    await request(app).post('/record/before').expect(202);
    await bg.idle();
    expect(bg.stats()).toMatchObject({ enqueued: 1, succeeded: 0 });

    await redis.stop();
    const started = Date.now();
    for (const id of ['during-1', 'during-2', 'during-3']) {
      await request(app).post(`/record/${id}`).set('X-Request-Id', id).expect(202, { queued: id });
    }
    await bg.idle();
    // Failing over does not wait for any timeout: Redis refused, so the enqueue rejected at once.
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(bg.stats()).toMatchObject({ enqueued: 1, succeeded: 3, failed: 0 });
    for (const id of ['during-1', 'during-2', 'during-3']) expect(ranHere(id)).toHaveLength(1);
    const failures = log.find(LOG_MESSAGES.enqueueFailed);
    expect(failures.map((line) => line.requestId)).toEqual(['during-1', 'during-2', 'during-3']);
    expect(failures[0]).toMatchObject({
      level: 'error',
      task: 'record',
      error: { message: expect.any(String) },
    });

    // Logged once for the outage, however many reconnections fail meanwhile.
    await pollUntil(
      () => durableLog.find(LOG_MESSAGES.redisError).length > 0,
      'the outage to be logged',
    );
    await redis.restart();
    await pollUntil(
      () => durableLog.find(LOG_MESSAGES.redisReady).length > 0,
      'the reconnection to be logged',
    );
    expect(durableLog.find(LOG_MESSAGES.redisError)).toHaveLength(1);
    expect(durableLog.find(LOG_MESSAGES.redisError)[0]).toMatchObject({
      level: 'error',
      queue: 'down',
      side: 'producer',
    });

    await request(app).post('/record/after').expect(202);
    await bg.idle();
    expect(bg.stats()).toMatchObject({ enqueued: 2, succeeded: 3 });
    expect(ranHere('after')).toEqual([]);
  } finally {
    await durable.close();
  }
});

test('Redis down from the start: enqueues fail fast, tasks run in-process, nothing hangs', async () => {
  const durableLog = captureLogger();
  await redis.stop();
  const durable = bullmqDurable({
    connection: connectionOf(redis.url),
    queueName: 'never-up',
    logger: durableLog.logger,
  });
  const { app, bg, log } = webApp(durable);
  try {
    const started = Date.now();
    await request(app).post('/record/cold-1').expect(202);
    await request(app).post('/record/cold-2').expect(202);
    await bg.idle();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(bg.stats()).toMatchObject({ enqueued: 0, succeeded: 2 });
    expect(ranHere('cold-1')).toHaveLength(1);
    expect(log.find(LOG_MESSAGES.enqueueFailed)).toHaveLength(2);
    expect(durableLog.find(LOG_MESSAGES.redisError)).toHaveLength(1);
  } finally {
    await durable.close();
    await redis.restart();
  }
});

test('a Redis that accepts connections but never answers: the enqueue gives up after enqueueTimeoutMs and the task runs in-process', async () => {
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address() as net.AddressInfo;
  const durable = bullmqDurable({
    connection: { url: `redis://127.0.0.1:${port}` },
    queueName: 'silent',
    enqueueTimeoutMs: 200,
    logger: captureLogger().logger,
  });
  const { app, bg, log } = webApp(durable);
  try {
    const started = Date.now();
    await request(app).post('/record/hung').expect(202);
    await bg.idle();
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(ranHere('hung')).toHaveLength(1);
    expect(log.find(LOG_MESSAGES.enqueueFailed)).toEqual([
      expect.objectContaining({
        task: 'record',
        error: expect.objectContaining({ message: 'enqueue timed out after 200 ms' }),
      }),
    ]);
  } finally {
    await durable.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test('a worker rides out a Redis restart: the outage is logged once, and jobs added afterwards run', async () => {
  const workerLog: CapturedLogger = captureLogger();
  const worker = startWorker({
    connection: connectionOf(redis.url),
    queueName: 'bounce',
    tasks: [recordTask],
    logger: workerLog.logger,
  });
  const durable = bullmqDurable({ connection: connectionOf(redis.url), queueName: 'bounce' });
  const { app, bg } = webApp(durable);
  try {
    await worker.worker.waitUntilReady();
    await redis.stop();
    await pollUntil(
      () => workerLog.find(LOG_MESSAGES.redisError).length > 0,
      'the worker to log the outage',
    );
    await redis.restart();
    await pollUntil(
      () => workerLog.find(LOG_MESSAGES.redisReady).length > 0,
      'the worker to log the reconnection',
    );
    expect(workerLog.find(LOG_MESSAGES.redisError)).toHaveLength(1);

    const ran = new Promise<RunEvent>((resolve) => {
      const listener = (run: RunEvent) =>
        run.id === 'after-bounce' && (runs.off('run', listener), resolve(run));
      runs.on('run', listener);
    });
    // The producer reconnects on its own schedule: until then its enqueue would fail over to in-process.
    await pollUntil(async () => {
      await request(app).post('/record/after-bounce').expect(202);
      await bg.idle();
      return bg.stats().enqueued === 1 || undefined;
    }, 'an enqueue to succeed');
    expect((await ran).pid).toBe(process.pid);
    expect(workerLog.find(LOG_MESSAGES.workerError)).toEqual([]);
  } finally {
    await durable.close();
    await worker.close();
  }
});
