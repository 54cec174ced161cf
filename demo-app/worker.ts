/**
 * The demo's worker: runs the defined tasks that the demo server leaves to durable workers. With
 * DATABASE_URL, pg-boss's: the receipts and notifications that a crashed or drained server left
 * (and failed receipts' retries); with REDIS_URL, BullMQ's notifications. Start as many as you
 * like, on any machine. On SIGTERM or SIGINT it stops taking jobs, lets the running ones finish,
 * and exits 0.
 */
import { DEMO_PG_QUEUE } from './orders';
import { sendNotification, sendReceipt } from './notifications';

async function main(): Promise<{ close(): Promise<void> }> {
  const databaseUrl = process.env.DATABASE_URL;
  const redisUrl = process.env.REDIS_URL;
  if (databaseUrl) {
    const { startWorker } = await import('../lib/pg-boss');
    const worker = await startWorker({
      connectionString: databaseUrl,
      queueName: DEMO_PG_QUEUE, // must match orders.ts
      tasks: [sendReceipt, sendNotification],
      concurrency: Number(process.env.WORKER_CONCURRENCY ?? 8),
    });
    console.log(`worker ${process.pid} taking jobs from pg-boss queue ${DEMO_PG_QUEUE}`);
    return worker;
  }
  if (redisUrl) {
    const { startWorker } = await import('../lib/bullmq');
    const worker = startWorker({
      connection: { url: redisUrl },
      queueName: 'demo-background-tasks', // must match server.ts
      tasks: [sendNotification],
      concurrency: Number(process.env.WORKER_CONCURRENCY ?? 8),
    });
    worker.worker.once('ready', () =>
      console.log(`worker ${process.pid} taking jobs from demo-background-tasks`),
    );
    return worker;
  }
  throw new Error(
    'set DATABASE_URL (pg-boss, e.g. postgres://user@127.0.0.1:5432/db) or REDIS_URL (BullMQ, e.g. redis://127.0.0.1:6379): the worker takes its jobs from there',
  );
}

main().then(
  (worker) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      console.log(`${signal}: finishing the running jobs, then exiting`);
      await worker.close();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
  },
  (error: Error) => {
    console.error(`worker: ${error.message}`);
    process.exit(1);
  },
);
