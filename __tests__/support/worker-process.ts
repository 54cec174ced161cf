/**
 * A worker process for the BullMQ tests, run as `node -r ts-node/register/transpile-only` with
 * REDIS_URL, QUEUE_NAME and optionally CONCURRENCY and WORKER_OPTIONS (JSON). It writes one JSON
 * line per event to stdout: `ready`, each task run, each log record, and `closed` after SIGTERM.
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
const worker = startWorker({
  connection: { url: process.env.REDIS_URL! },
  queueName: process.env.QUEUE_NAME!,
  tasks: TASKS,
  logger: winston.createLogger({ level: 'debug', transports: [new Forward()] }),
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
