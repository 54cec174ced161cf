/**
 * A web process for the pg-boss tests, run as `node -r ts-node/register/transpile-only` with
 * PGBOSS_TEST_DATABASE_URL, QUEUE_NAME, LEASE_MARGIN_MS and optionally HANG=1. `POST /orders?mode=…`
 * writes an order and its receipt task in one transaction: `commit` (the default), `rollback`,
 * `die` (commits, says `committed`, and never responds: the test kills it), `hang` (the receipt
 * task never ends in a HANG=1 process). It writes one JSON line per event to stdout: `listening`
 * with its port, `committed` with the order, and each run of a task.
 */
import express from 'express';
import pg from 'pg';
import winston from 'winston';
import { backgroundTasks } from '../../lib';
import { pgBossDurable } from '../../lib/pg-boss';
import { runs, sendReceipt } from './pgboss-tasks';

const say = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);
runs.on('run', say);

const url = process.env.PGBOSS_TEST_DATABASE_URL!;
const pool = new pg.Pool({ connectionString: url, max: 20 });
const bg = backgroundTasks({
  logger: winston.createLogger({ transports: [new winston.transports.Console({ level: 'warn' })] }),
  durable: pgBossDurable({
    connectionString: url,
    queueName: process.env.QUEUE_NAME!,
    leaseMarginMs: Number(process.env.LEASE_MARGIN_MS ?? 500),
  }),
});
const app = express();
app.use(bg);
app.post('/orders', async (req, res, next) => {
  const mode = String(req.query.mode ?? 'commit');
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
      ...(mode === 'hang' && { hang: 'in-web' as const }),
    });
    if (mode === 'rollback') {
      await client.query('ROLLBACK');
      res.status(409).json({ orderId, rolledBack: true });
      return;
    }
    await client.query('COMMIT');
    say({ event: 'committed', orderId });
    if (mode === 'die') return; // no response: the test kills this process now
    res.status(201).json({ orderId });
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    next(error);
  } finally {
    client.release();
  }
});
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  say({ event: 'listening', port: address.port, pid: process.pid });
});
