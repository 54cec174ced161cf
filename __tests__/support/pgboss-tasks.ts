/**
 * The defined tasks and the tables of the pg-boss tests, shared by the test process and the web
 * child processes: an order and its receipt. The receipt task writes one row per run in
 * `receipts` (with the process and the attempt), so that every run is visible from any process,
 * even one that was killed. PGBOSS_TEST_DATABASE_URL says where the database is.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { defineTask } from '../../lib';

export const SCHEMA = `
  CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item text NOT NULL);
  CREATE TABLE IF NOT EXISTS receipts (
    order_id integer NOT NULL, pid integer NOT NULL, attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
  );`;

/** Each run of a task here: `{ task, orderId, attempt }`, for the tests that watch one process. */
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
   * says it started and never ends; elsewhere it runs as usual.
   */
  hang?: 'once' | 'in-web';
}

/** Writes the order's receipt: one row per run. */
export const sendReceipt = defineTask(
  'send-receipt',
  async ({ orderId, fail, hang }: OrderPayload, ctx) => {
    runs.emit('run', { event: 'started', orderId, attempt: ctx.attempt });
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
  },
  { timeoutMs: 1_000, retries: 1, retryDelayMs: 10 },
);
