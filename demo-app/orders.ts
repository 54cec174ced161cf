/**
 * The demo's orders: `POST /orders` writes an order and its receipt task in one transaction
 * (`?fail=1` rolls it back after `addInTransaction()`, so that no receipt is ever sent). With
 * DATABASE_URL the orders and the jobs are in that PostgreSQL (and `npm run worker` runs what a
 * crash left); without it, in PGlite inside the process, so that the demo needs nothing
 * installed. pg-boss needs Node 22.12 or later: on an older Node the route answers a plain 501.
 */
import type { RequestHandler } from 'express';
import type { Logger } from 'winston';
import type { DurableQueue } from '../lib';
import { sendReceipt } from './notifications';

export const DEMO_PG_QUEUE = 'demo-orders';

const CREATE_ORDERS =
  'CREATE TABLE IF NOT EXISTS demo_orders (id serial PRIMARY KEY, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())';

export interface Orders {
  /** Where the orders are, for the startup text. */
  readonly where: string;
  /** The durable queue for `backgroundTasks()`; undefined when pg-boss cannot load here. */
  readonly durable: DurableQueue | undefined;
  readonly route: RequestHandler;
  close(): Promise<void>;
}

/** Runs `work` in a database transaction: its `db` takes the route's queries and `addInTransaction()`. */
type InTransaction = <T>(work: (db: { query: QueryFn }) => Promise<T>) => Promise<T>;
type QueryFn = (
  text: string,
  values?: unknown[],
) => Promise<{ rows: Array<Record<string, unknown>> }>;

/** Sets up the orders on DATABASE_URL, else on PGlite; on a Node without require(esm), the 501 route. */
export async function setUpOrders(
  databaseUrl: string | undefined,
  logger: Logger,
): Promise<Orders> {
  let pgBoss: typeof import('../lib/pg-boss');
  try {
    pgBoss = await import('../lib/pg-boss');
  } catch (error) {
    const reason = (error as Error).message;
    return {
      where: `unavailable: ${reason}`,
      durable: undefined,
      route: (_req, res) => {
        res.status(501).type('text/plain').send(`POST /orders is not available here. ${reason}\n`);
      },
      close: async () => undefined,
    };
  }
  const { pgBossDurable, startWorker } = pgBoss;
  if (databaseUrl) {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: databaseUrl });
    await pool.query(CREATE_ORDERS);
    const durable = pgBossDurable({
      connectionString: databaseUrl,
      queueName: DEMO_PG_QUEUE,
      logger,
    });
    await durable.start();
    const inTransaction: InTransaction = async (work) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await work(client as never);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
    };
    return {
      where: 'PostgreSQL at DATABASE_URL (run `npm run worker` with it for what a crash leaves)',
      durable,
      route: ordersRoute(inTransaction),
      async close() {
        await durable.close();
        await pool.end();
      },
    };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  const { PgBoss, fromPglite } = await import('pg-boss');
  const pglite = new PGlite();
  await pglite.query(CREATE_ORDERS);
  // One connection for everything: pg-boss shares it through fromPglite().
  const boss = new PgBoss({
    db: fromPglite(pglite),
    backend: 'pglite',
    openTelemetry: { enabled: false },
  });
  const durable = pgBossDurable({ boss, queueName: DEMO_PG_QUEUE, logger });
  await durable.start();
  // In the same process: what drain() gives back runs here too, before the in-memory database goes.
  const worker = await startWorker({
    boss,
    queueName: DEMO_PG_QUEUE,
    tasks: [sendReceipt],
    logger,
  });
  return {
    where: 'PGlite in this process (set DATABASE_URL to use a PostgreSQL server)',
    durable,
    route: ordersRoute((work) => pglite.transaction((tx) => work(tx as never))),
    async close() {
      await worker.close();
      await boss.stop({ graceful: true });
      await pglite.close();
    },
  };
}

function ordersRoute(inTransaction: InTransaction): RequestHandler {
  return async (req, res, next) => {
    const email = typeof req.query.email === 'string' ? req.query.email : 'ann@example.com';
    const fail = req.query.fail === '1';
    try {
      const orderId = await inTransaction(async (db) => {
        const { rows } = await db.query(
          'INSERT INTO demo_orders (email) VALUES ($1) RETURNING id',
          [email],
        );
        const id = Number(rows[0].id);
        await res.locals.backgroundTasks.addInTransaction(db, sendReceipt, { orderId: id, email });
        if (fail) throw new RolledBack(id);
        return id;
      });
      // Committed before the response: the receipt runs in this process as soon as it is sent.
      res.status(201).json({ orderId, message: 'Order placed; its receipt is on its way.' });
    } catch (error) {
      if (!(error instanceof RolledBack)) return next(error);
      res.status(409).json({
        orderId: error.orderId,
        message: 'Rolled back (?fail=1): no receipt will be sent.',
      });
    }
  };
}

class RolledBack extends Error {
  constructor(readonly orderId: number) {
    super(`order ${orderId} rolled back`);
  }
}
