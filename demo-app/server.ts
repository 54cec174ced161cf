/**
 * Starts the demo on PORT (default 3000) and shuts it down gracefully, as the README's recipe
 * says: on SIGTERM or SIGINT it stops accepting connections, drains the background tasks for at
 * most DRAIN_TIMEOUT_MS, logs `shutdown complete`, closes the logger so that every line reaches
 * its destination, and exits 0. With LOG_FILE set it logs to that file instead of the console.
 */
import type { AddressInfo } from 'node:net';
import winston from 'winston';
import { closeLogger } from '../lib';
import { createDemoApp } from './app';
import { notificationLog } from './notifications';

const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const drainTimeoutMs = Number(process.env.DRAIN_TIMEOUT_MS ?? 10_000);

async function main(): Promise<void> {
  const logger = createLogger(process.env.LOG_FILE);
  const durable = process.env.REDIS_URL
    ? await redisQueue(process.env.REDIS_URL, logger)
    : undefined;
  const { app, bg } = createDemoApp({ logger, durable });
  const server = app.listen(port, host, () => {
    const { port: actual } = server.address() as AddressInfo;
    const base = `http://${host}:${actual}`;
    console.log(`demo listening on ${base}${durable ? ' (tasks on BullMQ: run `npm run worker`)' : ''}
try:
  curl -X POST '${base}/send-notification/ann@example.com?message=welcome'   # queues a notification
  curl -X POST '${base}/send-notification/ann@example.com?message=hello'     # 500; the handler notifies ops
  curl -X POST '${base}/failing-task'                                        # the task fails: see the log
  curl -X POST '${base}/report?ms=3000'                                      # a slow task; Ctrl-C drains it
notifications are appended to ${notificationLog()}`);
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
    await durable?.close?.();
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

/** Loaded only when REDIS_URL is set, so the demo never needs Redis otherwise. */
async function redisQueue(url: string, logger: winston.Logger) {
  const { bullmqDurable } = await import('../lib/bullmq');
  return bullmqDurable({ connection: { url }, queueName: 'demo-background-tasks', logger });
}

void main();
