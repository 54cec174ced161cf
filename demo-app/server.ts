/**
 * Starts the demo on PORT (default 3000) and shuts it down gracefully, as the README's recipe
 * says: on SIGTERM or SIGINT it stops accepting connections, drains the background tasks for at
 * most DRAIN_TIMEOUT_MS, logs `shutdown complete`, closes the logger so that every line reaches
 * its destination, and exits 0. With LOG_FILE set it logs to that file instead of the console.
 * Prometheus metrics are served on METRICS_PORT (default 9464); OTEL_TRACES_EXPORTER=console
 * prints the spans; with REDIS_URL the defined task goes through BullMQ and the queue dashboard
 * (bull-board) is at /admin/queues; otherwise POST /orders writes orders and their receipts on
 * pg-boss: in the PostgreSQL at DATABASE_URL, or in PGlite inside the process.
 */
import type { AddressInfo } from 'node:net';
import type { RequestHandler } from 'express';
import winston from 'winston';
import { closeLogger, type DurableQueue } from '../lib';
import { createDemoApp } from './app';
import { notificationLog } from './notifications';
import { setUpOrders } from './orders';
import { startTelemetry } from './telemetry';

const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const metricsPort = Number(process.env.METRICS_PORT ?? 9464);
const drainTimeoutMs = Number(process.env.DRAIN_TIMEOUT_MS ?? 10_000);
/** The BullMQ queue of the demo; `npm run worker` takes from it. */
const DEMO_QUEUE = 'demo-background-tasks';

async function main(): Promise<void> {
  const telemetry = await startTelemetry(host, metricsPort).catch((error: Error) => {
    throw new Error(
      `the metrics endpoint could not listen on ${host}:${metricsPort} (${error.message}): ` +
        'set METRICS_PORT to a free port, or to 0 to take any',
    );
  });
  const logger = createLogger(process.env.LOG_FILE);
  const redis = process.env.REDIS_URL ? await withRedis(process.env.REDIS_URL, logger) : undefined;
  // One durable queue per middleware: BullMQ with REDIS_URL, else pg-boss (which /orders needs).
  const orders =
    redis === undefined ? await setUpOrders(process.env.DATABASE_URL, logger) : undefined;
  const { app, bg } = createDemoApp({
    logger,
    durable: redis?.durable ?? orders?.durable,
    mount: redis === undefined ? {} : { '/admin/queues': redis.dashboard },
    orders: orders?.route,
  });
  const server = app.listen(port, host, () => {
    const { port: actual } = server.address() as AddressInfo;
    const base = `http://${host}:${actual}`;
    console.log(`demo listening on ${base}${redis ? ' (tasks on BullMQ: run `npm run worker`)' : ''}
try:
  curl -X POST '${base}/send-notification/ann@example.com?message=welcome'   # queues a notification
  curl -X POST '${base}/send-notification/ann@example.com?message=hello'     # 500; the handler notifies ops
  curl -X POST '${base}/failing-task'                                        # the task fails: see the log
  curl -X POST '${base}/report?ms=3000'                                      # a slow task; Ctrl-C drains it
  curl -X POST '${base}/orders?email=ann@example.com'                        # an order and its receipt, one transaction
  curl -X POST '${base}/orders?email=ann@example.com&fail=1'                 # rolled back: no receipt, ever
  curl ${telemetry.metricsUrl}                                 # Prometheus metrics
orders: ${orders?.where ?? 'not set up (REDIS_URL is set: BullMQ is the durable queue, and Redis cannot join a SQL transaction)'}
notifications are appended to ${notificationLog()}${
      redis ? `\nqueue dashboard: ${base}/admin/queues` : ''
    }${process.env.OTEL_TRACES_EXPORTER === 'console' ? '\nspans are printed below as they end' : ''}`);
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(
      `${signal}: closing the server and draining background tasks (at most ${drainTimeoutMs} ms)`,
    );
    server.close();
    server.closeIdleConnections();
    const { completed, abandoned } = await bg.drain({ timeoutMs: drainTimeoutMs });
    await redis?.close();
    await orders?.close();
    await telemetry.shutdown();
    logger.info('shutdown complete', { completed, abandoned });
    await closeLogger(logger);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

/** JSON lines, to LOG_FILE when it is set, else to the console. */
function createLogger(file: string | undefined): winston.Logger {
  return winston.createLogger({
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [
      file ? new winston.transports.File({ filename: file }) : new winston.transports.Console(),
    ],
  });
}

/**
 * The durable queue and the dashboard, loaded only when REDIS_URL is set, so that the demo never
 * needs Redis (nor bullmq) otherwise.
 */
async function withRedis(
  url: string,
  logger: winston.Logger,
): Promise<{ durable: DurableQueue; dashboard: RequestHandler; close(): Promise<void> }> {
  const { bullmqDurable } = await import('../lib/bullmq');
  const { Queue } = await import('bullmq');
  const { createBullBoard } = await import('@bull-board/api');
  const { BullMQAdapter } = await import('@bull-board/api/bullMQAdapter');
  const { ExpressAdapter } = await import('@bull-board/express');
  const durable = bullmqDurable({ connection: { url }, queueName: DEMO_QUEUE, logger });
  const queue = new Queue(DEMO_QUEUE, { connection: { url } });
  queue.on('error', () => undefined); // the durable queue logs Redis outages once; the dashboard shows them
  const board = new ExpressAdapter();
  board.setBasePath('/admin/queues');
  createBullBoard({ queues: [new BullMQAdapter(queue)], serverAdapter: board });
  return {
    durable,
    dashboard: board.getRouter() as RequestHandler,
    async close() {
      await Promise.all([durable.close(), queue.close()]);
    },
  };
}

main().catch((error: Error) => {
  console.error(`demo: ${error.message}`);
  process.exit(1);
});
