/**
 * The database of a pg-boss test file and the apps on it: one real PostgreSQL for the whole file
 * (started in `beforeAll`), the orders tables of pgboss-tasks.ts and a pool on them, and, per
 * test, a fresh queue with its web side (`POST /orders`, pgboss-tasks.ts's `ordersRoute()`) and,
 * on demand, its worker. A test's setups are closed after it; after the file, every child process
 * it spawned is killed and the server stopped. The tasks of the web child processes find the
 * server through PGBOSS_TEST_DATABASE_URL, which this sets. Call it inside `describePgBoss()`:
 * it loads the pg-boss entry point, which throws on Node 20.
 */
import express, { type RequestHandler } from 'express';
import pg from 'pg';
import type { BackgroundTasksMiddleware, BackgroundTasksOptions } from '../../lib';
import type {
  DurableWorker,
  PgBossDurable,
  PgBossDurableOptions,
  StartWorkerOptions,
} from '../../lib/pg-boss';
import { makeApp, type TestApp } from './apps';
import { killAllJsonChildren } from './json-child';
import { SCHEMA, closeTaskPool, ordersRoute, sendReceipt, type OrderPayload } from './pgboss-tasks';
import { startPostgres, type PostgresServer } from './postgres';
import { pollUntil } from './redis';

export interface SetUpOptions {
  /** Added to every receipt's payload. */
  payload?: Partial<OrderPayload>;
  /** The middleware's options (the durable queue is the setup's). */
  tasks?: Omit<BackgroundTasksOptions, 'logger' | 'durable'>;
  /** The durable queue's options beyond its location (default: `leaseMarginMs: 500`). */
  durable?: Omit<PgBossDurableOptions, 'connectionString' | 'boss' | 'queueName'>;
  /** The worker's options beyond its location and tasks. */
  worker?: Omit<StartWorkerOptions, 'connectionString' | 'boss' | 'queueName' | 'tasks'>;
  /** A middleware mounted before `backgroundTasks()` (a request span, say). */
  before?: RequestHandler;
}

/** A fresh queue, its web side and (started on demand) its worker. */
export interface Setup {
  readonly queueName: string;
  readonly durable: PgBossDurable;
  readonly bg: BackgroundTasksMiddleware;
  readonly app: express.Express;
  readonly log: TestApp['log'];
  /** The worker, started at the first call: in this process, polling every 0.5 s. */
  worker(): Promise<DurableWorker>;
  /** Commits the last order placed with `?mode=late`. */
  commitLate(): Promise<void>;
  /** The states of the queue's jobs in pg-boss, read through `findJobs()`. */
  jobStates(): Promise<string[]>;
  /**
   * Waits until the queue's jobs are in `states`: a worker's stats() count a job before pg-boss
   * has written its completion or failure.
   */
  untilJobStates(states: string[]): Promise<void>;
  close(): Promise<void>;
}

export interface OrdersDatabase {
  /** The server, once `beforeAll` has run. */
  readonly server: PostgresServer;
  /** A pool of 10 on it. */
  readonly pool: pg.Pool;
  /** The receipts of an order, oldest first: one row per run of its task, in any process. */
  receiptsOf(orderId: number): Promise<Array<{ pid: number; attempt: number }>>;
  setUp(options?: SetUpOptions): Setup;
}

/** Registers the file's `beforeAll`, `afterEach` and `afterAll`. */
export function useOrdersDatabase(): OrdersDatabase {
  const { pgBossDurable, startWorker } =
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
    require('../../lib/pg-boss') as typeof import('../../lib/pg-boss');
  let server: PostgresServer | undefined;
  let pool: pg.Pool | undefined;
  let queues = 0;
  const open = new Set<Setup>();
  beforeAll(async () => {
    server = await startPostgres();
    process.env.PGBOSS_TEST_DATABASE_URL = server.url;
    pool = new pg.Pool({ connectionString: server.url, max: 10 });
    await pool.query(SCHEMA);
  }, 60_000);
  // Only a test's own setups are closed by it; what a failed test left open is closed here.
  afterEach(async () => {
    for (const setup of open) await setup.close();
    open.clear();
  });
  afterAll(async () => {
    await killAllJsonChildren();
    await closeTaskPool();
    await pool?.end();
    await server?.stop();
  });

  function setUp(options: SetUpOptions = {}): Setup {
    const queueName = `orders-${++queues}`;
    const url = server!.url;
    const durable = pgBossDurable({
      connectionString: url,
      queueName,
      leaseMarginMs: 500,
      ...options.durable,
    });
    let late: (() => Promise<void>) | undefined;
    const { app, bg, log } = makeApp(
      express,
      (app) =>
        app.post(
          '/orders',
          ordersRoute(pool!, { payload: options.payload, late: (commit) => (late = commit) }),
        ),
      { tasks: { ...options.tasks, durable }, before: options.before },
    );
    let started: Promise<DurableWorker> | undefined;
    const worker = () =>
      (started ??= startWorker({
        connectionString: url,
        queueName,
        tasks: [sendReceipt],
        logger: log.logger,
        concurrency: 2,
        workOptions: { pollingIntervalSeconds: 0.5 },
        ...options.worker,
      }));
    const setup: Setup = {
      queueName,
      durable,
      bg,
      app,
      log,
      worker,
      commitLate: () => late!(),
      async jobStates() {
        const jobs = await (await worker()).boss.findJobs(queueName);
        return jobs.map((job) => job.state);
      },
      async untilJobStates(states) {
        const wanted = JSON.stringify(states);
        await pollUntil(
          async () => JSON.stringify(await setup.jobStates()) === wanted,
          `the jobs to be ${wanted}`,
        );
      },
      async close() {
        await bg.idle();
        if (started !== undefined) await (await started).close();
        await durable.close();
      },
    };
    open.add(setup);
    return setup;
  }

  return {
    get server() {
      return server!;
    },
    get pool() {
      return pool!;
    },
    async receiptsOf(orderId) {
      const { rows } = await pool!.query<{ pid: number; attempt: number }>(
        'SELECT pid, attempt FROM receipts WHERE order_id = $1 ORDER BY at',
        [orderId],
      );
      return rows;
    },
    setUp,
  };
}
