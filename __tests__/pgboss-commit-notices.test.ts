/**
 * The fast path's proof of commit on pg-boss, against a real PostgreSQL: each insert of
 * addInTransaction() sends a notification in the caller's transaction on the producer's own
 * channel, which PostgreSQL delivers only once that transaction commits; a task whose notification
 * came starts after the response with no claim statement. Each test counts the claims the durable
 * queue makes (its real `claim()`, wrapped) to tell the two paths apart.
 */
import { randomUUID } from 'node:crypto';
import express from 'express';
import request from 'supertest';
import { LOG_MESSAGES } from '../lib';
import type { PgBossDurable } from '../lib/pg-boss';
import { makeApp } from './support/apps';
import { captureLogger } from './support/capture';
import { useOrdersDatabase } from './support/pgboss-database';
import { describePgBoss } from './support/pgboss-node';
import { ordersRoute } from './support/pgboss-tasks';
import { pollUntil } from './support/redis';

describePgBoss("addInTransaction() on pg-boss: the commit's notification", () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
  const { pgBossDurable } = require('../lib/pg-boss') as typeof import('../lib/pg-boss');
  const db = useOrdersDatabase();
  const { receiptsOf, setUp } = db;

  /**
   * Starts the durable queue (pg-boss's start-up, in the first insert, would make its transaction
   * older than the lease allows a start with no claim), and counts the calls of its `claim()`,
   * which still makes them.
   */
  async function startCounting(durable: PgBossDurable): Promise<{ calls: number }> {
    await durable.start();
    const counter = { calls: 0 };
    const claim = durable.claim.bind(durable);
    durable.claim = (id, leaseMs) => {
      counter.calls++;
      return claim(id, leaseMs);
    };
    return counter;
  }

  /** The producer's listening session: pg-boss names its connections `pgboss…`. */
  async function listener(): Promise<{ pid: number; state: string; query: string } | undefined> {
    const { rows } = await db.pool.query<{ pid: number; state: string; query: string }>(
      `SELECT pid, state, query FROM pg_stat_activity
        WHERE application_name LIKE 'pgboss%'
          AND (query LIKE 'LISTEN "ebt\\_%' OR query LIKE '%FROM pg_listening_channels()%')`,
    );
    expect(rows.length).toBeLessThanOrEqual(1);
    return rows[0];
  }

  test('committed: the task runs here right after the response with no claim statement, and its job is completed', async () => {
    const setup = setUp();
    const claims = await startCounting(setup.durable);
    const response = await request(setup.app).post('/orders').expect(201);
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({ succeeded: 1, leftToWorkers: 0, pending: 0 });
    expect(claims.calls).toBe(0);
    expect(await receiptsOf(response.body.orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    expect(await setup.jobStates()).toEqual(['completed']);
  });

  test('added in a savepoint that is rolled back, the order committed: no notification comes, the claim finds no job, and nothing runs anywhere', async () => {
    const setup = setUp();
    const claims = await startCounting(setup.durable);
    const worker = await setup.worker();
    const response = await request(setup.app).post('/orders?mode=savepoint').expect(201);
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({ succeeded: 0, leftToWorkers: 1, pending: 0 });
    expect(setup.log.find(LOG_MESSAGES.leftToWorkers)).toEqual([
      expect.objectContaining({ level: 'info', state: 'not claimed' }),
    ]);
    // The order is there; its task never was: no job for any worker.
    const orderId = response.body.orderId as number;
    const { rows } = await db.pool.query('SELECT id FROM orders WHERE id = $1', [orderId]);
    expect(rows).toHaveLength(1);
    expect(claims.calls).toBe(1);
    expect(await setup.jobStates()).toEqual([]);
    expect(await receiptsOf(orderId)).toEqual([]);
    expect(worker.stats()).toMatchObject({ succeeded: 0, failed: 0, running: 0 });
  });

  test('the response ended before the commit: the task waits for the commit (commitWaitMs) and runs here as soon as it comes, with no claim', async () => {
    const setup = setUp({ durable: { commitWaitMs: 60_000 } });
    const claims = await startCounting(setup.durable);
    const response = await request(setup.app).post('/orders?mode=late').expect(201);
    // The response has ended and the task waits: no claim, nothing run.
    expect(setup.bg.stats()).toMatchObject({ pending: 1, succeeded: 0, leftToWorkers: 0 });
    await setup.commitLate();
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({ succeeded: 1, leftToWorkers: 0, pending: 0 });
    expect(claims.calls).toBe(0);
    expect(await receiptsOf(response.body.orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    expect(await setup.jobStates()).toEqual(['completed']);
    expect((await setup.worker()).stats()).toMatchObject({ succeeded: 0 });
  });

  test('drain() gives up on a task waiting for its commit: it is left to the workers, and the notification of the commit that follows runs nothing here; a worker runs it once the lease ends', async () => {
    const setup = setUp({ durable: { commitWaitMs: 60_000 } });
    await startCounting(setup.durable);
    const worker = await setup.worker();
    const response = await request(setup.app).post('/orders?mode=late').expect(201);
    expect(await setup.bg.drain({ timeoutMs: 0 })).toEqual({ completed: false, abandoned: 1 });
    expect(setup.log.find(LOG_MESSAGES.leftToWorkers)).toEqual([
      expect.objectContaining({ level: 'error', state: 'waiting for the commit' }),
    ]);
    await setup.commitLate();
    const orderId = response.body.orderId as number;
    await pollUntil(async () => worker.stats().succeeded === 1, 'the worker to run it', 15_000);
    await setup.untilJobStates(['completed']);
    expect(await receiptsOf(orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    expect(setup.bg.stats()).toMatchObject({ succeeded: 0, leftToWorkers: 1, pending: 0 });
  });

  test('a transaction open longer than half the margin: what is left of the lease cannot cover every attempt, so the job is claimed first (a fresh lease), then run here once', async () => {
    // leaseMarginMs 500: the job's lease is 2,510 ms and a start with no claim needs 2,260 ms of it.
    const setup = setUp();
    const claims = await startCounting(setup.durable);
    const response = await request(setup.app).post('/orders?openMs=400').expect(201);
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({ succeeded: 1, leftToWorkers: 0 });
    expect(claims.calls).toBe(1);
    expect(await receiptsOf(response.body.orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    expect(await setup.jobStates()).toEqual(['completed']);
  });

  test("the listener's connection terminated: a task whose notification it missed is claimed when it reconnects and runs here once; then notifications prove commits again", async () => {
    const log = captureLogger();
    // A wait far longer than the test: only the reconnect can end it.
    const setup = setUp({ durable: { commitWaitMs: 60_000, logger: log.logger } });
    const claims = await startCounting(setup.durable);
    const before = (await listener())!;
    const response = await request(setup.app).post('/orders?mode=late').expect(201);
    await db.pool.query('SELECT pg_terminate_backend($1)', [before.pid]);
    await pollUntil(async () => (await listener()) === undefined, 'the listener to be gone');
    // pg-boss reconnects after a second at the soonest: this commit's notification is lost.
    await setup.commitLate();
    await pollUntil(() => setup.bg.stats().succeeded === 1, 'the task to run after the reconnect');
    await setup.bg.idle();
    expect(claims.calls).toBe(1);
    expect(await receiptsOf(response.body.orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    expect(await setup.jobStates()).toEqual(['completed']);
    expect(log.find(LOG_MESSAGES.workerError)).toEqual([
      expect.objectContaining({ side: 'producer', error: expect.any(Object) }),
    ]);

    // Listening again (its LISTEN done): the next task runs on its notification.
    await pollUntil(async () => {
      const now = await listener();
      return now !== undefined && now.pid !== before.pid && now.state === 'idle';
    }, 'the listener to be back');
    const next = await request(setup.app).post('/orders').expect(201);
    await setup.bg.idle();
    expect(claims.calls).toBe(1);
    expect(setup.bg.stats()).toMatchObject({ succeeded: 2, leftToWorkers: 0 });
    expect(await receiptsOf(next.body.orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
  });

  test('a notification on the channel that is no job id, or a job id nobody waits for, is ignored (the first logged): tasks go on with no claim', async () => {
    const log = captureLogger();
    const setup = setUp({ durable: { logger: log.logger } });
    const claims = await startCounting(setup.durable);
    const channel = /^LISTEN "(ebt_[0-9a-f]{32})"$/.exec((await listener())!.query)![1];
    await db.pool.query('SELECT pg_notify($1, $2), pg_notify($1, $3), pg_notify($1, $4)', [
      channel,
      'not a job id',
      randomUUID(),
      '',
    ]);
    await pollUntil(
      () => log.find(LOG_MESSAGES.workerError).length > 0,
      'the unreadable notification',
    );
    const response = await request(setup.app).post('/orders').expect(201);
    await setup.bg.idle();
    expect(claims.calls).toBe(0);
    expect(await receiptsOf(response.body.orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    // Two unreadable payloads: one line, the second counted as a repeat (said at close).
    expect(log.find(LOG_MESSAGES.workerError)).toEqual([
      expect.objectContaining({
        side: 'producer',
        error: expect.objectContaining({
          message: 'commit notice ignored: its payload is no job id',
        }),
      }),
    ]);
  });

  test('a pg-boss of your own whose database cannot listen (an IDatabase without listen()): nothing is proven, and each job is claimed, then run here once, as without notifications', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
    const { PgBoss } = require('pg-boss') as typeof import('pg-boss');
    const boss = new PgBoss({
      db: { executeSql: (text, values) => db.pool.query(text, values) },
      openTelemetry: { enabled: false },
    });
    const queueName = 'orders-without-listen';
    const durableLog = captureLogger();
    const durable = pgBossDurable({
      boss,
      queueName,
      leaseMarginMs: 500,
      logger: durableLog.logger,
    });
    try {
      const claims = await startCounting(durable);
      const { app, bg } = makeApp(express, (app) => app.post('/orders', ordersRoute(db.pool)), {
        tasks: { durable },
      });
      const response = await request(app).post('/orders').expect(201);
      await bg.idle();
      expect(bg.stats()).toMatchObject({ succeeded: 1, leftToWorkers: 0 });
      expect(claims.calls).toBe(1);
      expect(await receiptsOf(response.body.orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
      expect((await boss.findJobs(queueName)).map((job) => job.state)).toEqual(['completed']);
      // Nothing to say: an IDatabase without listen() chose the claim.
      expect(durableLog.find(LOG_MESSAGES.workerError)).toEqual([]);
    } finally {
      await durable.close();
      await boss.stop({ graceful: false });
    }
  });
});
