/**
 * The demo's worker: runs the notification tasks that the demo server hands to BullMQ when it
 * runs with REDIS_URL. Start as many as you like, on any machine: `REDIS_URL=redis://… npm run worker`.
 * On SIGTERM or SIGINT it stops taking jobs, lets the running ones finish, and exits 0.
 */
import { startWorker } from '../lib/bullmq';
import { sendNotification } from './notifications';

const url = process.env.REDIS_URL;
if (url === undefined || url === '') {
  console.error(
    'REDIS_URL is not set: the worker takes its jobs from Redis, e.g. REDIS_URL=redis://127.0.0.1:6379',
  );
  process.exit(1);
}
const worker = startWorker({
  connection: { url },
  queueName: 'demo-background-tasks', // must match server.ts
  tasks: [sendNotification],
  concurrency: Number(process.env.WORKER_CONCURRENCY ?? 8),
});
worker.worker.once('ready', () =>
  console.log(`worker ${process.pid} taking jobs from demo-background-tasks`),
);
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
