/**
 * `add(definedTask, payload)` with `durable: pgBossDurable(...)`, against a real PostgreSQL: as
 * with BullMQ, the task is handed off when the response ends and a worker (`startWorker`) runs it;
 * a send that fails, because PostgreSQL cannot be reached or because the send outlives
 * `sendTimeoutMs`, is logged and the task runs in this process instead.
 */
import express from 'express';
import request from 'supertest';
import { LOG_MESSAGES } from '../lib';
import { inTime } from '../lib/in-time';
import { makeApp } from './support/apps';
import { useOrdersDatabase } from './support/pgboss-database';
import { describePgBoss } from './support/pgboss-node';
import { sendReceipt } from './support/pgboss-tasks';
import { freePort } from './support/ports';
import { pollUntil } from './support/redis';

describePgBoss('add(definedTask) on pg-boss', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
  const { pgBossDurable } = require('../lib/pg-boss') as typeof import('../lib/pg-boss');
  const db = useOrdersDatabase();

  /** An app whose `POST /signup` adds the receipt of `orderId` with add(), then answers 202. */
  function signupApp(durable: import('../lib').DurableQueue, orderId: number) {
    return makeApp(
      express,
      (app) =>
        app.post('/signup', (_req, res) => {
          res.locals.backgroundTasks.add(sendReceipt, { orderId });
          res.status(202).end();
        }),
      { tasks: { durable } },
    );
  }

  test('the task becomes a job when the response ends, with its payload, request and policy, and a worker runs it', async () => {
    const setup = db.setUp();
    const worker = await setup.worker();
    let jobsAtAdd: string[] | undefined;
    const { app, bg } = makeApp(
      express,
      (app) =>
        app.post('/signup', async (_req, res) => {
          res.locals.backgroundTasks.add(sendReceipt, { orderId: 101 });
          // Nothing is sent before the response ends.
          jobsAtAdd = (await worker.boss.findJobs(setup.queueName)).map((job) => job.id);
          res.status(202).end();
        }),
      { tasks: { durable: setup.durable } },
    );
    await request(app).post('/signup').set('X-Request-Id', 'handoff-1').expect(202);
    await bg.idle();
    expect(jobsAtAdd).toEqual([]);
    expect(bg.stats()).toMatchObject({ enqueued: 1, succeeded: 0, pending: 0, running: 0 });
    const [job] = await worker.boss.findJobs(setup.queueName);
    expect(job).toMatchObject({
      data: {
        task: 'send-receipt',
        payload: { orderId: 101 },
        request: { id: 'handoff-1', method: 'POST', url: '/signup', statusCode: 202 },
      },
      // sendReceipt: retries 1, retryDelayMs 10, timeoutMs 1000.
      retryLimit: 1,
      retryDelay: 1,
      retryBackoff: true,
      expireInSeconds: 6,
    });
    await pollUntil(() => worker.stats().succeeded === 1, 'the worker to run it');
    expect(await db.receiptsOf(101)).toEqual([{ pid: process.pid, attempt: 1 }]);
    expect(await setup.jobStates()).toEqual(['completed']);
  });

  test('PostgreSQL cannot be reached: the failed send is logged, and the task runs in this process', async () => {
    const closed = await freePort();
    const durable = pgBossDurable({
      connectionString: `postgres://postgres@127.0.0.1:${closed}/postgres`,
      queueName: 'unreachable',
    });
    const { app, bg, log } = signupApp(durable, 102);
    try {
      await request(app).post('/signup').expect(202);
      await bg.idle();
      expect(bg.stats()).toMatchObject({ succeeded: 1, enqueued: 0, failed: 0, pending: 0 });
      expect(log.find(LOG_MESSAGES.enqueueFailed)).toEqual([
        expect.objectContaining({
          level: 'error',
          task: 'send-receipt',
          error: expect.objectContaining({ message: expect.stringMatching(/ECONNREFUSED/) }),
        }),
      ]);
      expect(await db.receiptsOf(102)).toEqual([{ pid: process.pid, attempt: 1 }]);
    } finally {
      await durable.close();
    }
  });

  test('a send that outlives sendTimeoutMs (its insert waits on a lock): logged, run here, and run again by a worker once the send lands', async () => {
    const setup = db.setUp({ durable: { sendTimeoutMs: 300 } });
    const worker = await setup.worker();
    await setup.durable.start();
    const { app, bg, log } = signupApp(setup.durable, 103);
    // Every insert into pg-boss's jobs waits until this transaction ends.
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE pgboss.job IN ACCESS EXCLUSIVE MODE');
      await request(app).post('/signup').expect(202);
      // Bounded, so that a send that is never given up fails this test rather than holding the lock.
      expect(await inTime(bg.idle(), 10_000)).toBe(true);
      expect(bg.stats()).toMatchObject({ succeeded: 1, enqueued: 0, pending: 0 });
      expect(log.find(LOG_MESSAGES.enqueueFailed)).toEqual([
        expect.objectContaining({
          task: 'send-receipt',
          error: expect.objectContaining({ message: 'pg-boss send timed out after 300 ms' }),
        }),
      ]);
      expect(await db.receiptsOf(103)).toEqual([{ pid: process.pid, attempt: 1 }]);
    } finally {
      await locker.query('COMMIT');
      locker.release();
    }
    // The send was not cancelled: its job lands, and a worker runs the task a second time.
    await pollUntil(() => worker.stats().succeeded === 1, 'the worker to run it again');
    expect(await db.receiptsOf(103)).toHaveLength(2);
  });
});
