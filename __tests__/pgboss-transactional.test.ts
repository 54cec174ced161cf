/**
 * addInTransaction() on pg-boss, against a real PostgreSQL: each guarantee of the fast path. A
 * route writes an order and its receipt task in one transaction; the receipt task writes one row
 * per run, so every run is counted in the database, whichever process made it. Crashes are real
 * web processes killed with SIGKILL; the worker runs in this process.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express from 'express';
import request from 'supertest';
import { LOG_MESSAGES, defineTask } from '../lib';
import { bullmqDurable } from '../lib/bullmq';
import { makeApp, type TestAppOptions } from './support/apps';
import { spawnJsonChild } from './support/json-child';
import { useOrdersDatabase } from './support/pgboss-database';
import { describePgBoss } from './support/pgboss-node';
import { ordersRoute, runs, sendReceipt, type OrderPayload } from './support/pgboss-tasks';
import { pollUntil } from './support/redis';

describePgBoss('addInTransaction() on pg-boss', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
  const { pgBossDurable } = require('../lib/pg-boss') as typeof import('../lib/pg-boss');
  const db = useOrdersDatabase();
  const { receiptsOf, setUp } = db;

  test('committed, process alive: the task runs here right after the response, exactly once, and its job is completed', async () => {
    const setup = setUp();
    const response = await request(setup.app).post('/orders').expect(201);
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({
      succeeded: 1,
      pending: 0,
      leftToWorkers: 0,
      enqueued: 0,
    });
    expect(await receiptsOf(response.body.orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    // Completed: no worker can fetch it, now or later.
    expect(await setup.jobStates()).toEqual(['completed']);
    expect((await setup.worker()).stats()).toMatchObject({ succeeded: 0, running: 0 });
  });

  test('rolled back: nothing runs, ever; the claim finds no job and the task is counted as left to the workers', async () => {
    const setup = setUp();
    const response = await request(setup.app).post('/orders?mode=rollback').expect(409);
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({ succeeded: 0, pending: 0, leftToWorkers: 1 });
    expect(setup.log.find(LOG_MESSAGES.leftToWorkers)).toEqual([
      expect.objectContaining({ level: 'info', task: 'send-receipt', state: 'not claimed' }),
    ]);
    // No job at all: no worker can ever run it.
    expect(await setup.jobStates()).toEqual([]);
    expect(await receiptsOf(response.body.orderId)).toEqual([]);
  });

  test('the response ended before the commit, and no commit came within commitWaitMs: the claim misses, a worker runs the task once the lease ends, and the late notification runs nothing here', async () => {
    const setup = setUp();
    const worker = await setup.worker();
    const response = await request(setup.app).post('/orders?mode=late').expect(201);
    // idle() waits for the wait (100 ms) and the claim.
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({ succeeded: 0, leftToWorkers: 1 });
    expect(setup.log.find(LOG_MESSAGES.leftToWorkers)).toEqual([
      expect.objectContaining({ level: 'info', state: 'not claimed' }),
    ]);
    const orderId = response.body.orderId as number;
    await setup.commitLate();
    const ran = await pollUntil(
      async () => (await receiptsOf(orderId)).length > 0,
      'the worker to run it',
      15_000,
    );
    expect(ran).toBe(true);
    expect(await receiptsOf(orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    await pollUntil(async () => worker.stats().succeeded === 1, "the worker's count");
    await setup.untilJobStates(['completed']);
    expect(setup.bg.stats()).toMatchObject({ succeeded: 0, running: 0, pending: 0 });
  });

  test.each(['before the response ends', 'during the task'])(
    'committed, then the web process is killed %s: a worker runs the task once the lease ends',
    async (when) => {
      const setup = setUp();
      const worker = await setup.worker();
      const web = spawnJsonChild('__tests__/support/pgboss-web-child.ts', {
        PGBOSS_TEST_DATABASE_URL: db.server.url,
        QUEUE_NAME: setup.queueName,
        LEASE_MARGIN_MS: '500',
        HANG: '1',
      });
      const { port } = await web.next((event) => event.event === 'listening', 'listening');
      const during = when === 'during the task';
      const query = during ? 'hang=in-web' : 'mode=die';
      const sent = fetch(`http://127.0.0.1:${port}/orders?${query}`, { method: 'POST' }).catch(
        (error: Error) => error,
      );
      const { orderId } = await web.next((event) => event.event === 'committed', 'the commit');
      if (during)
        await web.next(
          (event) => event.event === 'started' && event.orderId === orderId,
          'the task',
        );
      await web.kill();
      // Killed before its response the client sees the connection die; during its task, after the 201.
      const outcome = await sent;
      if (during) expect(outcome).toMatchObject({ status: 201 });
      else expect(outcome).toMatchObject({ message: 'fetch failed' });
      await pollUntil(
        async () => (await receiptsOf(orderId as number)).length > 0,
        'the worker to run it',
        15_000,
      );
      expect(await receiptsOf(orderId as number)).toEqual([{ pid: process.pid, attempt: 1 }]);
      await pollUntil(async () => worker.stats().succeeded === 1, "the worker's count");
    },
  );

  test("failed here on every attempt: pg-boss's retries take it over on the workers, then the dead-letter queue", async () => {
    const setup = setUp({ payload: { fail: true } });
    const worker = await setup.worker();
    const response = await request(setup.app).post('/orders').expect(201);
    await setup.bg.idle();
    const orderId = response.body.orderId as number;
    // retries: 1 here, so two attempts in this process.
    expect(setup.bg.stats()).toMatchObject({ failed: 1, succeeded: 0, leftToWorkers: 0 });
    const dead = await pollUntil(
      async () => {
        const jobs = await worker.boss.findJobs<{ payload: OrderPayload }>(
          `${setup.queueName}.dead-letter`,
        );
        return jobs.length > 0 && jobs;
      },
      'the dead-letter queue',
      20_000,
    );
    expect(dead.map((job) => job.data.payload)).toEqual([{ orderId, fail: true }]);
    await pollUntil(async () => worker.stats().failed === 1, "the worker's count");
    const failures = setup.log.find(LOG_MESSAGES.taskFailed);
    // The last attempt here, then the last on a worker (pg-boss retried it there once: retryLimit 1).
    expect(failures.map((line) => [line.attempt, typeof line.jobId])).toEqual([
      [2, 'string'],
      [2, 'string'],
    ]);
    expect(setup.log.find(LOG_MESSAGES.taskRetrying).map((line) => line.attempt)).toEqual([1, 1]);
    await setup.untilJobStates(['failed']);
  }, 30_000);

  test('drain() gives up on a running transactional task: it is left to the workers (counted and logged), and a worker runs it at once', async () => {
    const setup = setUp({ payload: { hang: 'once' } });
    const worker = await setup.worker();
    const started = new Promise<void>((resolve) =>
      runs.once('run', (event: { event: string }) => event.event === 'started' && resolve()),
    );
    const response = await request(setup.app).post('/orders').expect(201);
    const orderId = response.body.orderId as number;
    await started;
    expect(await setup.bg.drain({ timeoutMs: 50 })).toEqual({ completed: false, abandoned: 1 });
    expect(setup.bg.stats()).toMatchObject({
      running: 0,
      pending: 0,
      abandoned: 0,
      leftToWorkers: 1,
    });
    expect(setup.log.find(LOG_MESSAGES.leftToWorkers)).toEqual([
      expect.objectContaining({ level: 'error', state: 'running', jobId: expect.any(String) }),
    ]);
    // Given back: a worker takes it without waiting for the lease (2.5 s).
    await pollUntil(
      async () => (await receiptsOf(orderId)).length > 0,
      'the worker to run it',
      2_000,
    );
    await pollUntil(async () => worker.stats().succeeded === 1, "the worker's count");
  });

  test('the queue is full (maxPending): the job is inserted with no lease, left to the workers at once (logged at warn), and a worker runs it', async () => {
    const setup = setUp();
    const worker = await setup.worker();
    // One plain task pending before the insert: with maxPending 1 the queue is full.
    const { app, bg, log } = makeApp(
      express,
      (app) =>
        app.post(
          '/orders',
          (_req, res, next) => {
            res.locals.backgroundTasks.add(() => undefined);
            next();
          },
          ordersRoute(db.pool),
        ),
      { tasks: { durable: setup.durable, maxPending: 1 } },
    );
    const response = await request(app).post('/orders').expect(201);
    const orderId = response.body.orderId as number;
    await bg.idle();
    // The plain task ran here; the receipt did not.
    expect(bg.stats()).toMatchObject({ succeeded: 1, leftToWorkers: 1, pending: 0, rejected: 0 });
    expect(log.find(LOG_MESSAGES.leftToWorkers)).toEqual([
      expect.objectContaining({
        level: 'warn',
        task: 'send-receipt',
        state: 'queue full',
        jobId: expect.any(String),
      }),
    ]);
    // No lease to wait for: far sooner than the 2.5 s a claimed job's would be.
    await pollUntil(async () => worker.stats().succeeded === 1, 'the worker to run it');
    expect(await receiptsOf(orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    await setup.untilJobStates(['completed']);
  });

  test('the task outruns its lease here (its event loop blocked past it): a worker runs it again, and the web process logs that one may have', async () => {
    const setup = setUp();
    const worker = await setup.worker();
    const unblock = path.join(mkdtempSync(path.join(tmpdir(), 'ebt-lease-')), 'unblock');
    const web = spawnJsonChild('__tests__/support/pgboss-web-child.ts', {
      PGBOSS_TEST_DATABASE_URL: db.server.url,
      QUEUE_NAME: setup.queueName,
      LEASE_MARGIN_MS: '500',
      HANG: '1',
      BLOCK_UNTIL_FILE: unblock,
    });
    const { port } = await web.next((event) => event.event === 'listening', 'listening');
    const response = await fetch(`http://127.0.0.1:${port}/orders?hang=blocked-in-web`, {
      method: 'POST',
    });
    expect(response.status).toBe(201);
    const { orderId } = (await response.json()) as { orderId: number };
    // The web process wrote its receipt, then blocked; past the lease (2.5 s) a worker takes the job.
    await pollUntil(
      async () => (await receiptsOf(orderId)).some((receipt) => receipt.pid === process.pid),
      'a worker to run it again',
      15_000,
    );
    writeFileSync(unblock, '');
    const line = await web.next(
      (event) => event.message === LOG_MESSAGES.leaseOutrun,
      'the line that says the lease ran out',
    );
    expect(line).toMatchObject({
      level: 'error',
      task: 'send-receipt',
      jobId: expect.any(String),
      outcome: 'succeeded',
    });
    expect(line.overrunMs).toBeGreaterThan(0);
    // Run twice: once in the web process, once on the worker.
    expect((await receiptsOf(orderId)).map((receipt) => receipt.pid)).toEqual([
      web.pid,
      process.pid,
    ]);
    await pollUntil(async () => worker.stats().succeeded === 1, "the worker's count");
    await setup.untilJobStates(['completed']);
    await web.kill();
  }, 30_000);

  /** The next run of a task here to start, held until `during()` has settled. */
  function holdNextRun(during: () => Promise<unknown>): void {
    runs.once('run', (event: { event: string; hold?: (promise: Promise<unknown>) => void }) => {
      if (event.event === 'started') event.hold!(during());
    });
  }

  test('a claim that fails (the durable queue closed under the request) is logged at error, and the task left to a worker, which runs it after the lease', async () => {
    const setup = setUp();
    const worker = await setup.worker();
    const durable = pgBossDurable({
      connectionString: db.server.url,
      queueName: setup.queueName,
      leaseMarginMs: 500,
    });
    await durable.start();
    const { app, bg, log } = makeApp(
      express,
      (app) => app.post('/orders', ordersRoute(db.pool, { committed: () => void durable.close() })),
      { tasks: { durable } },
    );
    const response = await request(app).post('/orders').expect(201);
    await bg.idle();
    expect(bg.stats()).toMatchObject({ succeeded: 0, leftToWorkers: 1, pending: 0 });
    expect(log.find(LOG_MESSAGES.leftToWorkers)).toEqual([
      expect.objectContaining({
        level: 'error',
        state: 'claim failed',
        jobId: expect.any(String),
        error: expect.objectContaining({ message: 'pgBossDurable(): closed' }),
      }),
    ]);
    const orderId = response.body.orderId as number;
    await pollUntil(async () => worker.stats().succeeded === 1, 'the worker to run it', 15_000);
    expect(await receiptsOf(orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
  });

  test('a completion that fails (the durable queue closed while the task ran here) is logged, and a worker runs the task again after the lease', async () => {
    const setup = setUp();
    const worker = await setup.worker();
    holdNextRun(() => setup.durable.close());
    const response = await request(setup.app).post('/orders').expect(201);
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({ succeeded: 1, leftToWorkers: 0 });
    expect(setup.log.find(LOG_MESSAGES.jobNotSettled)).toEqual([
      expect.objectContaining({
        level: 'error',
        task: 'send-receipt',
        jobId: expect.any(String),
        outcome: 'succeeded',
        error: expect.objectContaining({ message: 'pgBossDurable(): closed' }),
      }),
    ]);
    const orderId = response.body.orderId as number;
    await pollUntil(
      async () => worker.stats().succeeded === 1,
      'the worker to run it again',
      15_000,
    );
    expect(await receiptsOf(orderId)).toHaveLength(2);
  });

  test('a job cancelled (from a dashboard, say) while its task runs here: the completion finds it settled, and says so', async () => {
    const setup = setUp();
    const { boss } = await setup.worker();
    holdNextRun(async () => {
      const [job] = await boss.findJobs(setup.queueName);
      await boss.cancel(setup.queueName, job.id);
    });
    await request(setup.app).post('/orders').expect(201);
    await setup.bg.idle();
    expect(setup.log.find(LOG_MESSAGES.jobNotSettled)).toEqual([
      expect.objectContaining({
        task: 'send-receipt',
        outcome: 'succeeded',
        reason: 'settled already',
      }),
    ]);
    expect(await setup.jobStates()).toEqual(['cancelled']);
  });

  test("the transaction's client in pg-boss's { executeSql } shape (the adapters' shape; here a hand-written one over node-postgres): the task runs here, and its job is completed", async () => {
    const setup = setUp();
    const { app, bg } = makeApp(
      express,
      (app) =>
        app.post('/orders', async (_req, res) => {
          const client = await db.pool.connect();
          try {
            await client.query('BEGIN');
            const { rows } = await client.query<{ id: number }>(
              "INSERT INTO orders (item) VALUES ('book') RETURNING id",
            );
            await res.locals.backgroundTasks.addInTransaction(
              { executeSql: (text, values) => client.query(text, values) },
              sendReceipt,
              { orderId: rows[0].id },
            );
            await client.query('COMMIT');
            res.status(201).json({ orderId: rows[0].id });
          } finally {
            client.release();
          }
        }),
      { tasks: { durable: setup.durable } },
    );
    const response = await request(app).post('/orders').expect(201);
    await bg.idle();
    expect(bg.stats()).toMatchObject({ succeeded: 1, leftToWorkers: 0 });
    expect(await receiptsOf(response.body.orderId)).toEqual([{ pid: process.pid, attempt: 1 }]);
    expect(await setup.jobStates()).toEqual(['completed']);
  });

  test('an insert that fails rejects addInTransaction(), and the task counts as never added', async () => {
    const setup = setUp();
    const rejected: unknown[] = [];
    const { app, bg } = makeApp(
      express,
      (app) =>
        app.post('/', async (_req, res) => {
          const client = await db.pool.connect();
          await client.query('BEGIN');
          await client.query('SELECT 1/0').catch(() => undefined); // the transaction is aborted now
          await res.locals.backgroundTasks
            .addInTransaction(client, sendReceipt, { orderId: 0 })
            .catch((error: unknown) => rejected.push(error));
          await client.query('ROLLBACK');
          client.release();
          res.end();
        }),
      { tasks: { durable: setup.durable } },
    );
    await request(app).post('/').expect(200);
    await bg.idle();
    expect(rejected).toEqual([
      expect.objectContaining({ message: expect.stringMatching(/current transaction is aborted/) }),
    ]);
    expect(bg.stats()).toMatchObject({ pending: 0, running: 0, succeeded: 0, leftToWorkers: 0 });
  });

  describe('what addInTransaction() refuses, with a TypeError that says why', () => {
    async function refusal(
      options: TestAppOptions,
      call: (tasks: import('../lib').BackgroundTasks) => Promise<void>,
    ): Promise<{ name: string; message: string }> {
      const { app } = makeApp(
        express,
        (app) =>
          app.post('/', async (_req, res) => {
            const error = await call(res.locals.backgroundTasks).then(
              () => undefined,
              (thrown: Error) => thrown,
            );
            res.json({ name: error?.name, message: error?.message });
          }),
        options,
      );
      return (await request(app).post('/').expect(200)).body;
    }

    test('a BullMQ durable queue: Redis cannot join a SQL transaction', async () => {
      const durable = bullmqDurable({ connection: { url: 'redis://127.0.0.1:1' } });
      const error = await refusal({ tasks: { durable } }, (tasks) =>
        tasks.addInTransaction({ query: async () => ({ rows: [] }) }, sendReceipt, { orderId: 1 }),
      );
      expect(error).toEqual({
        name: 'TypeError',
        message: expect.stringMatching(
          /cannot join a SQL transaction \(Redis cannot: .*use pgBossDurable/,
        ),
      });
      await durable.close();
    });

    test('no durable queue at all', async () => {
      const error = await refusal({}, (tasks) =>
        tasks.addInTransaction({ query: async () => ({ rows: [] }) }, sendReceipt, { orderId: 1 }),
      );
      expect(error.message).toMatch(/^addInTransaction\(\): this middleware has no durable queue/);
    });

    test.each<[string, () => unknown, unknown, RegExp]>([
      [
        'a db that is no SQL client',
        () => ({}),
        { orderId: 1 },
        /db must be the transaction's client/,
      ],
      [
        'a task that is not defined',
        () => ({ query: async () => ({ rows: [] }) }),
        undefined,
        /task must be a defineTask\(\) task/,
      ],
      [
        'a payload that does not survive JSON',
        () => ({ query: async () => ({ rows: [] }) }),
        { orderId: new Date() },
        /payload\.orderId is a Date/,
      ],
    ])('%s', async (_name, db, payload, message) => {
      const setup = setUp();
      const task = payload === undefined ? () => undefined : sendReceipt;
      const error = await refusal({ tasks: { durable: setup.durable } }, (tasks) =>
        tasks.addInTransaction(db() as never, task as never, payload as never),
      );
      expect(error).toEqual({ name: 'TypeError', message: expect.stringMatching(message) });
    });

    test('a task with no timeout: its lease could not be sized', async () => {
      const setup = setUp();
      const forever = defineTask('forever', (_payload: null) => undefined, { timeoutMs: 0 });
      const error = await refusal({ tasks: { durable: setup.durable } }, (tasks) =>
        tasks.addInTransaction({ query: async () => ({ rows: [] }) }, forever, null),
      );
      expect(error.message).toMatch(/task "forever" has no timeout \(timeoutMs: 0\)/);
    });
  });
});
