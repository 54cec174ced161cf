/**
 * addInTransaction() on pg-boss, against a real PostgreSQL: each guarantee of the fast path. A
 * route writes an order and its receipt task in one transaction; the receipt task writes one row
 * per run, so every run is counted in the database, whichever process made it. Crashes are real
 * web processes killed with SIGKILL; the worker runs in this process.
 */
import express from 'express';
import pg from 'pg';
import request from 'supertest';
import { LOG_MESSAGES, defineTask, type BackgroundTasksMiddleware } from '../lib';
import { bullmqDurable } from '../lib/bullmq';
import type { DurableWorker, PgBossDurable } from '../lib/pg-boss';
import { makeApp, type TestAppOptions } from './support/apps';
import { killAllJsonChildren, spawnJsonChild } from './support/json-child';
import { describePgBoss } from './support/pgboss-node';
import {
  SCHEMA,
  closeTaskPool,
  runs,
  sendReceipt,
  type OrderPayload,
} from './support/pgboss-tasks';
import { startPostgres, type PostgresServer } from './support/postgres';
import { pollUntil } from './support/redis';

describePgBoss('addInTransaction() on pg-boss', () => {
  // Loaded here: on an older Node the entry throws, and describePgBoss() says so instead.
  const { pgBossDurable, startWorker } =
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
    require('../lib/pg-boss') as typeof import('../lib/pg-boss');
  let server: PostgresServer;
  let pool: pg.Pool;
  let queues = 0;

  beforeAll(async () => {
    server = await startPostgres();
    process.env.PGBOSS_TEST_DATABASE_URL = server.url;
    pool = new pg.Pool({ connectionString: server.url, max: 10 });
    await pool.query(SCHEMA);
  }, 60_000);

  afterAll(async () => {
    await killAllJsonChildren();
    await closeTaskPool();
    await pool?.end();
    await server?.stop();
  });

  /** A fresh queue for each test, its web side and (started on demand) its worker. */
  interface Setup {
    queueName: string;
    durable: PgBossDurable;
    bg: BackgroundTasksMiddleware;
    app: express.Express;
    log: ReturnType<typeof makeApp>['log'];
    worker(): Promise<DurableWorker>;
    close(): Promise<void>;
  }

  /** Only a test's own setup is closed by it; what a failed test left open is closed here. */
  const open = new Set<Setup>();
  afterEach(async () => {
    for (const setup of open) await setup.close();
    open.clear();
  });

  /**
   * The app: `POST /orders` writes an order and adds its receipt in the same transaction. With
   * `?rollback=1` it rolls back after addInTransaction; with `?late=1` it responds first and
   * commits when `commitLate()` is called.
   */
  function setUp(payload: Partial<OrderPayload> = {}): Setup & { commitLate(): Promise<void> } {
    const queueName = `orders-${++queues}`;
    const durable = pgBossDurable({ connectionString: server.url, queueName, leaseMarginMs: 500 });
    let late: (() => Promise<void>) | undefined;
    const { app, bg, log } = makeApp(
      express,
      (app) =>
        app.post('/orders', async (req, res, next) => {
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            const { rows } = await client.query<{ id: number }>(
              'INSERT INTO orders (item) VALUES ($1) RETURNING id',
              ['book'],
            );
            const orderId = rows[0].id;
            await res.locals.backgroundTasks.addInTransaction(client, sendReceipt, {
              orderId,
              ...payload,
            });
            if (req.query.rollback === '1') {
              await client.query('ROLLBACK');
              client.release();
            } else if (req.query.late === '1') {
              late = async () => {
                await client.query('COMMIT');
                client.release();
              };
            } else {
              await client.query('COMMIT');
              client.release();
            }
            res.status(201).json({ orderId });
          } catch (error) {
            client.release();
            next(error);
          }
        }),
      { tasks: { durable } },
    );
    let started: Promise<DurableWorker> | undefined;
    const setup = {
      queueName,
      durable,
      bg,
      app,
      log,
      worker: () =>
        (started ??= startWorker({
          connectionString: server.url,
          queueName,
          tasks: [sendReceipt],
          logger: log.logger,
          concurrency: 2,
          workOptions: { pollingIntervalSeconds: 0.5 },
        })),
      async close() {
        await bg.idle();
        if (started !== undefined) await (await started).close();
        await durable.close();
      },
      commitLate: () => late!(),
    };
    open.add(setup);
    return setup;
  }

  async function receiptsOf(orderId: number): Promise<Array<{ pid: number; attempt: number }>> {
    const { rows } = await pool.query<{ pid: number; attempt: number }>(
      'SELECT pid, attempt FROM receipts WHERE order_id = $1 ORDER BY at',
      [orderId],
    );
    return rows;
  }

  /** The job's state in pg-boss, read from its own tables through findJobs(); undefined when there is no job. */
  async function jobStates(setup: Setup): Promise<string[]> {
    const boss = (await setup.worker()).boss;
    const jobs = await boss.findJobs(setup.queueName);
    return jobs.map((job) => job.state);
  }

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
    expect(await jobStates(setup)).toEqual(['completed']);
    expect((await setup.worker()).stats()).toMatchObject({ succeeded: 0, running: 0 });
  });

  test('rolled back: nothing runs, ever; the claim finds no job and the task is counted as left to the workers', async () => {
    const setup = setUp();
    const response = await request(setup.app).post('/orders?rollback=1').expect(201);
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({ succeeded: 0, pending: 0, leftToWorkers: 1 });
    expect(setup.log.find(LOG_MESSAGES.leftToWorkers)).toEqual([
      expect.objectContaining({ level: 'info', task: 'send-receipt', state: 'not claimed' }),
    ]);
    // No job at all: no worker can ever run it.
    expect(await jobStates(setup)).toEqual([]);
    expect(await receiptsOf(response.body.orderId)).toEqual([]);
  });

  test('the response ended before the commit: the claim misses, and a worker runs the task once the lease ends', async () => {
    const setup = setUp();
    const worker = await setup.worker();
    const response = await request(setup.app).post('/orders?late=1').expect(201);
    await setup.bg.idle();
    expect(setup.bg.stats()).toMatchObject({ succeeded: 0, leftToWorkers: 1 });
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
    expect(await jobStates(setup)).toEqual(['completed']);
  });

  test.each(['before the response ends', 'during the task'])(
    'committed, then the web process is killed %s: a worker runs the task once the lease ends',
    async (when) => {
      const setup = setUp();
      const worker = await setup.worker();
      const web = spawnJsonChild('__tests__/support/pgboss-web-child.ts', {
        PGBOSS_TEST_DATABASE_URL: server.url,
        QUEUE_NAME: setup.queueName,
        LEASE_MARGIN_MS: '500',
        HANG: '1',
      });
      const { port } = await web.next((event) => event.event === 'listening', 'listening');
      const mode = when === 'during the task' ? 'hang' : 'die';
      const sent = fetch(`http://127.0.0.1:${port}/orders?mode=${mode}`, { method: 'POST' }).catch(
        (error: Error) => error,
      );
      const { orderId } = await web.next((event) => event.event === 'committed', 'the commit');
      if (mode === 'hang')
        await web.next(
          (event) => event.event === 'started' && event.orderId === orderId,
          'the task',
        );
      await web.kill();
      // Killed before its response the client sees the connection die; during its task, after the 201.
      const outcome = await sent;
      if (mode === 'die') expect(outcome).toMatchObject({ message: 'fetch failed' });
      else expect(outcome).toMatchObject({ status: 201 });
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
    const setup = setUp({ fail: true });
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
    expect(await jobStates(setup)).toEqual(['failed']);
  }, 30_000);

  test('drain() gives up on a running transactional task: it is left to the workers (counted and logged), and a worker runs it at once', async () => {
    const setup = setUp({ hang: 'once' });
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

  test('an insert that fails rejects addInTransaction(), and the task counts as never added', async () => {
    const setup = setUp();
    const rejected: unknown[] = [];
    const { app, bg } = makeApp(
      express,
      (app) =>
        app.post('/', async (_req, res) => {
          const client = await pool.connect();
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
