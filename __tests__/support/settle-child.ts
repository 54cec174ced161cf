/**
 * The child process of settle.test.ts: one `settle()` call site (`SITE`: task, onTaskError,
 * override, notifier, durable (a durable queue's `enqueue`), worker (BullMQ's), pgboss-worker)
 * handed each hostile value of `hostile-values.ts` in turn, in a real
 * process, so that an unhandled rejection or an uncaught exception shows as a crash (its exit
 * code and stderr). Prints one JSON line per value as it is done (what the library counted and
 * logged for it), then `{ "done": true }`.
 * With `SITE=foreign`: a value no handler can be attached to, then a plain rejection nobody
 * handles, which must still crash the process as Node's default says.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { backgroundTasks, defineTask, httpErrorHandler, LOG_MESSAGES } from '../../lib';
import { bullmqDurable, startWorker } from '../../lib/bullmq';
import { captureLogger } from './capture';
import { HOSTILE_VALUES } from './hostile-values';

const say = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);
const site = process.env.SITE!;
const log = captureLogger();
/** Lets the current turn's rejections reach Node's unhandled-rejection check, which runs before the next macrotask. */
const nextTurn = () => new Promise((resolve) => setTimeout(resolve, 20));

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

/** The in-process sites: one app, a request per value. */
async function inProcess(): Promise<void> {
  let current = HOSTILE_VALUES[0];
  const bg = backgroundTasks({
    logger: log.logger,
    timeoutMs: 2_000,
    onTaskError: site === 'onTaskError' ? () => current.make() : undefined,
    // A durable queue of the app's own: what its enqueue returns is settled too.
    durable: site === 'durable' ? { enqueue: () => current.make() as Promise<unknown> } : undefined,
  });
  const handedOff = defineTask('handedOff', () => undefined);
  const app = express();
  app.use(bg);
  app.get('/', (_req, res, next) => {
    if (site === 'task') res.locals.backgroundTasks.add(function hostileTask() { return current.make(); }); // prettier-ignore
    if (site === 'durable') res.locals.backgroundTasks.add(handedOff, null);
    if (site === 'onTaskError')
      res.locals.backgroundTasks.add(function failingTask() {
        throw new Error('the task failed');
      });
    if (site === 'override' || site === 'notifier') return next(new Error('the route failed'));
    res.end('ok');
  });
  app.use(
    httpErrorHandler({
      logger: log.logger,
      backgroundTasks: bg,
      notify: site === 'notifier' ? [function hostileNotifier() { return current.make(); }] : [], // prettier-ignore
      overrides:
        site === 'override'
          ? [
              {
                match: () => true,
                handle: (_error, _req, res) => {
                  res.status(503).end('answered by the override');
                  return current.make();
                },
              },
            ]
          : [],
    }),
  );
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  for (const value of HOSTILE_VALUES) {
    current = value;
    log.records.length = 0;
    const response = await get(port, '/');
    await bg.idle();
    await nextTurn();
    say({
      value: value.name,
      status: response.status,
      body: response.body,
      stats: bg.stats(),
      enqueueFailed: log.find(LOG_MESSAGES.enqueueFailed).length,
      hookFailed: log.find(LOG_MESSAGES.hookFailed).length,
      overrideFailed: log.find(LOG_MESSAGES.overrideFailed).map((r) => r.reason),
      failedWith: log.find(LOG_MESSAGES.taskFailed).map((r) => (r.error as { name: string }).name),
    });
  }
  server.close();
}

/** A worker whose task returns each value, for jobs added through `bullmqDurable`. */
async function onWorker(): Promise<void> {
  const connection = { url: process.env.REDIS_URL! };
  const queueName = `settle-${process.pid}`;
  let current = HOSTILE_VALUES[0];
  const hostile = defineTask('hostile', () => current.make(), { timeoutMs: 2_000 });
  const worker = startWorker({ connection, queueName, tasks: [hostile], logger: log.logger });
  await worker.worker.waitUntilReady();
  const durable = bullmqDurable({ connection, queueName });
  const request = { id: 'settle', method: 'GET', url: '/', statusCode: 200, aborted: false };
  for (const value of HOSTILE_VALUES) {
    current = value;
    log.records.length = 0;
    const ended = new Promise<string>((resolve) => {
      const completed = () => done('completed');
      const failed = () => done('failed');
      const done = (outcome: string) => {
        worker.worker.off('completed', completed).off('failed', failed);
        resolve(outcome);
      };
      worker.worker.on('completed', completed).on('failed', failed);
    });
    const job = { name: 'hostile', payload: {}, timeoutMs: 2_000, retries: 0, retryDelayMs: 0 };
    await durable.enqueue({ ...job, request });
    const outcome = await ended;
    await nextTurn();
    say({
      value: value.name,
      outcome,
      stats: worker.stats(),
      failedWith: log.find(LOG_MESSAGES.taskFailed).map((r) => (r.error as { name: string }).name),
    });
  }
  await durable.close();
  await worker.close();
}

/** A pg-boss worker whose task returns each value, for jobs sent through `pgBossDurable`. */
async function onPgBossWorker(): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: Node 22.12+ only
  const pgBoss = require('../../lib/pg-boss') as typeof import('../../lib/pg-boss');
  const location = {
    connectionString: process.env.DATABASE_URL!,
    queueName: `settle-${process.pid}`,
  };
  let current = HOSTILE_VALUES[0];
  const hostile = defineTask('hostile', () => current.make(), { timeoutMs: 2_000 });
  const worker = await pgBoss.startWorker({
    ...location,
    tasks: [hostile],
    logger: log.logger,
    workOptions: { pollingIntervalSeconds: 0.5 },
  });
  const durable = pgBoss.pgBossDurable(location);
  const request = { id: 'settle', method: 'GET', url: '/', statusCode: 200, aborted: false };
  for (const value of HOSTILE_VALUES) {
    current = value;
    log.records.length = 0;
    const { succeeded, failed } = worker.stats();
    const job = { name: 'hostile', payload: {}, timeoutMs: 2_000, retries: 0, retryDelayMs: 0 };
    await durable.enqueue({ ...job, request });
    // pg-boss's worker emits no event per job: its counts say when the job ended.
    while (worker.stats().succeeded + worker.stats().failed === succeeded + failed)
      await new Promise((resolve) => setTimeout(resolve, 20));
    await nextTurn();
    say({
      value: value.name,
      outcome: worker.stats().succeeded > succeeded ? 'completed' : 'failed',
      stats: worker.stats(),
      failedWith: log.find(LOG_MESSAGES.taskFailed).map((r) => (r.error as { name: string }).name),
    });
  }
  await durable.close();
  await worker.close();
}

/** An unobservable promise, then a rejection of the app's own that nobody handles. */
async function foreign(): Promise<void> {
  const bg = backgroundTasks({ logger: log.logger });
  const app = express();
  app.use(bg);
  app.get('/', (_req, res) => {
    res.locals.backgroundTasks.add(function hostileTask() {
      return HOSTILE_VALUES.find((v) => v.name.includes('constructor getter'))!.make();
    });
    res.end();
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  await get((server.address() as AddressInfo).port, '/');
  await bg.idle();
  await nextTurn();
  say({ value: 'unobservable', stats: bg.stats() });
  server.close();
  void Promise.reject(new Error('a rejection of the app itself, unhandled'));
}

const run = { worker: onWorker, 'pgboss-worker': onPgBossWorker, foreign }[site] ?? inProcess;
run().then(
  () => say({ done: true }),
  (error: unknown) => {
    process.stderr.write(`child failed: ${String(error)}\n`);
    process.exitCode = 2;
  },
);
