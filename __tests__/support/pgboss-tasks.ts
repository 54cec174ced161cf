/**
 * The defined tasks, the tables and the route of the pg-boss tests, shared by the test process and
 * the web child processes: an order and its receipt. The receipt task writes one row per run in
 * `receipts` (with the process and the attempt), so that every run is visible from any process,
 * even one that was killed. PGBOSS_TEST_DATABASE_URL says where the database is.
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import type { RequestHandler } from 'express';
import pg from 'pg';
import { defineTask } from '../../lib';

export const SCHEMA = `
  CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item text NOT NULL);
  CREATE TABLE IF NOT EXISTS receipts (
    order_id integer NOT NULL, pid integer NOT NULL, attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
  );`;

/**
 * Each run of a task here: `{ event: 'started' | 'ran', orderId, attempt }`, for the tests that
 * watch one process. A listener of 'started' may call the event's `hold(promise)`: the run goes on
 * once that promise has settled.
 */
export const runs = new EventEmitter();

let pool: pg.Pool | undefined;
/** The orders whose receipt hung once in this process. */
const hung = new Set<number>();

/** The pool the tasks write with, made on first use. */
export function taskPool(): pg.Pool {
  return (pool ??= new pg.Pool({ connectionString: process.env.PGBOSS_TEST_DATABASE_URL, max: 4 }));
}

export async function closeTaskPool(): Promise<void> {
  const closing = pool;
  pool = undefined;
  await closing?.end();
}

export interface OrderPayload {
  orderId: number;
  /** Every attempt throws. */
  fail?: boolean;
  /**
   * `once`: the first run in this process says it started, then waits until its signal is aborted;
   * a later run writes the receipt. `in-web`: in a HANG=1 process (a web process to be killed) it
   * says it started and never ends; elsewhere it runs as usual. `blocked-in-web`: in a HANG=1
   * process it writes its receipt, then blocks the event loop until the file BLOCK_UNTIL_FILE
   * exists (what a CPU-bound step or a long GC pause does); elsewhere it runs as usual.
   */
  hang?: 'once' | 'in-web' | 'blocked-in-web';
}

/** Writes the order's receipt: one row per run. */
export const sendReceipt = defineTask(
  'send-receipt',
  async ({ orderId, fail, hang }: OrderPayload, ctx) => {
    const holds: Array<Promise<unknown>> = [];
    const hold = (promise: Promise<unknown>) => holds.push(promise);
    runs.emit('run', { event: 'started', orderId, attempt: ctx.attempt, hold });
    await Promise.allSettled(holds);
    if (hang === 'in-web' && process.env.HANG === '1') await new Promise(() => undefined);
    if (hang === 'once' && !hung.has(orderId)) {
      hung.add(orderId);
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
      return;
    }
    if (fail) throw new Error(`receipt ${orderId} failed on attempt ${ctx.attempt}`);
    await taskPool().query('INSERT INTO receipts (order_id, pid, attempt) VALUES ($1, $2, $3)', [
      orderId,
      process.pid,
      ctx.attempt,
    ]);
    runs.emit('run', { event: 'ran', orderId, attempt: ctx.attempt });
    if (hang === 'blocked-in-web' && process.env.HANG === '1') {
      const file = process.env.BLOCK_UNTIL_FILE!;
      while (!existsSync(file)); // synchronous on purpose: no timer of this process can fire
    }
  },
  { timeoutMs: 1_000, retries: 1, retryDelayMs: 10 },
);

export interface OrdersRouteOptions {
  /** Added to every receipt's payload. */
  payload?: Partial<OrderPayload>;
  /** Called once an order has committed. */
  committed?(orderId: number): void;
  /** Called with what commits an order of `?mode=late`. */
  late?(commit: () => Promise<void>): void;
}

/**
 * `POST /orders?mode=…` writes an order and adds its receipt task in one transaction on a client of
 * `pool`. `commit` (the default) commits, then answers 201 `{ orderId }`; `rollback` rolls back
 * after addInTransaction() and answers 409; `savepoint` adds the task in a savepoint, rolls back
 * to it and commits the order, then answers 201; `late` answers 201 first and commits when the
 * function given to `options.late` is called; `die` commits and never answers (the test kills the
 * process). `?openMs=N` holds the transaction open N ms (`pg_sleep`) before addInTransaction().
 * `?hang=…` sets the payload's `hang`, and `?fail=1` its `fail`.
 */
export function ordersRoute(pool: pg.Pool, options: OrdersRouteOptions = {}): RequestHandler {
  return async (req, res, next) => {
    const mode = String(req.query.mode ?? 'commit');
    const client = await pool.connect();
    let release = true;
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: number }>(
        'INSERT INTO orders (item) VALUES ($1) RETURNING id',
        ['book'],
      );
      const orderId = rows[0].id;
      const hang = req.query.hang as OrderPayload['hang'] | undefined;
      if (req.query.openMs !== undefined)
        await client.query('SELECT pg_sleep($1)', [Number(req.query.openMs) / 1_000]);
      if (mode === 'savepoint') await client.query('SAVEPOINT receipt');
      await res.locals.backgroundTasks.addInTransaction(client, sendReceipt, {
        orderId,
        ...options.payload,
        ...(hang !== undefined && { hang }),
        ...(req.query.fail === '1' && { fail: true }),
      });
      if (mode === 'savepoint') await client.query('ROLLBACK TO SAVEPOINT receipt');
      if (mode === 'rollback') {
        await client.query('ROLLBACK');
        res.status(409).json({ orderId, rolledBack: true });
        return;
      }
      if (mode === 'late') {
        release = false;
        options.late?.(async () => {
          await client.query('COMMIT');
          client.release();
        });
        res.status(201).json({ orderId });
        return;
      }
      await client.query('COMMIT');
      options.committed?.(orderId);
      if (mode === 'die') return; // no response: the test kills this process now
      res.status(201).json({ orderId });
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      next(error);
    } finally {
      if (release) client.release();
    }
  };
}
