/**
 * A worker process for the BullMQ tests, run as `node -r ts-node/register/transpile-only` with
 * REDIS_URL, QUEUE_NAME and optionally CONCURRENCY, WORKER_OPTIONS (JSON) and TASK_NAMES (comma
 * separated: the tasks it runs, all by default). It writes one JSON line per event to stdout:
 * `ready`, each task run, each log record, each `onTaskError` call, and `closed` after SIGTERM.
 */
import winston from 'winston';
import Transport from 'winston-transport';
import { startWorker } from '../../lib/bullmq';
import { TASKS, runs } from './durable-tasks';

const say = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);

class Forward extends Transport {
  override log(info: Record<string, unknown>, callback: () => void): void {
    say({ event: 'log', ...info });
    callback();
  }
}

runs.on('run', say);
const names = process.env.TASK_NAMES?.split(',');
const worker = startWorker({
  connection: { url: process.env.REDIS_URL! },
  queueName: process.env.QUEUE_NAME!,
  tasks: TASKS.filter((task) => names === undefined || names.includes(task.name)),
  logger: winston.createLogger({ level: 'debug', transports: [new Forward()] }),
  onTaskError: ({ task, attempt, jobId, error }) =>
    say({ event: 'taskError', task, attempt, jobId, message: error.message }),
  concurrency: Number(process.env.CONCURRENCY ?? 1),
  workerOptions: JSON.parse(process.env.WORKER_OPTIONS ?? '{}'),
});
worker.worker.once('ready', () => say({ event: 'ready', pid: process.pid }));
process.once('SIGTERM', () => {
  void worker.close().then(() => {
    say({ event: 'closed', pid: process.pid });
    process.exit(0);
  });
});
