/**
 * A web process for the pg-boss tests, run as `node -r ts-node/register/transpile-only` with
 * PGBOSS_TEST_DATABASE_URL, QUEUE_NAME, LEASE_MARGIN_MS and optionally HANG=1 (and
 * BLOCK_UNTIL_FILE). `POST /orders?mode=…&hang=…` is pgboss-tasks.ts's `ordersRoute()`. It writes
 * one JSON line per event to stdout: `listening` with its port, `committed` with the order, each
 * run of a task, and its log lines at `warn` and above.
 */
import express from 'express';
import pg from 'pg';
import winston from 'winston';
import { backgroundTasks } from '../../lib';
import { pgBossDurable } from '../../lib/pg-boss';
import { ordersRoute, runs } from './pgboss-tasks';

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
app.post(
  '/orders',
  ordersRoute(pool, { committed: (orderId) => say({ event: 'committed', orderId }) }),
);
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  say({ event: 'listening', port: address.port, pid: process.pid });
});
