/**
 * The PostgreSQL part (child process entry; Node 22.12 or later, where pg-boss loads): on one
 * loopback PostgreSQL (started as the tests start theirs), the fast path of `addInTransaction()`
 * against pg-boss's own `send()` in the same transaction plus `work()`:
 *
 * - latency from the commit to the task's start: the fast path (run on its commit's notification,
 *   or claimed first when none came: the claims are counted), a pg-boss worker polling every 2 s
 *   (its default) and one woken by LISTEN/NOTIFY, with requests arriving at random times;
 * - throughput end to end (first request to last job marked completed), 16 clients at once;
 * - what `addInTransaction()` adds to a request over a bare INSERT in the same transaction (and
 *   pg-boss's own send there, for reference), one request at a time, timed on the server.
 *
 * One process holds the web app, the pg-boss workers and the HTTP client, so that every time is on
 * one clock; every pool holds 10 connections and every runner runs 16 tasks at once. The variants
 * take turns, round after round (the first of each round rotating), each after its warm-up.
 *
 * Usage: pgboss.ts <rounds> <latencySamples> <throughputTasks> <costPairs>
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import express, { type RequestHandler } from 'express';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { startPostgres } from '../__tests__/support/postgres';
import { backgroundTasks, defineTask } from '../lib';
import { pgBossDurable } from '../lib/pg-boss';
import { childMain } from './children';
import { silentLogger } from './logger';

/** The connections of every pool: the app's, and each pg-boss instance's (pg-boss's default). */
const POOL_MAX = 10;
/** Tasks run at once: the middleware's default concurrency, and each pg-boss worker's localConcurrency. */
const CONCURRENCY = 16;
/** Latency: requests arrive at random (a Poisson process) at this rate, for every variant. */
const ARRIVALS_PER_SECOND = 4;
const QUEUES = { fast: 'bench-fast', poll: 'bench-poll', notify: 'bench-notify' } as const;

export type LatencyVariant = 'fast' | 'poll' | 'notify';
export type ThroughputVariant = 'fast' | 'pgboss';
export type CostVariant = 'addInTransaction' | 'pgbossSend' | 'bareInsert';

export interface PgBossResult {
  node: string;
  postgres: string;
  /** Commit to task start, ms: each variant's samples, round by round. */
  latency: Record<LatencyVariant, number[][]>;
  /** The fast path's samples again, from the response's end (its `finish`) to the task's start. */
  fastFromResponse: number[][];
  /** The fast path's requests, from the commit to the response's end, and to the commit's notification here. */
  fastSteps: { responseEnded: number[][]; notified: number[][] };
  /** Tasks per second end to end, one figure per round. */
  throughput: Record<ThroughputVariant, number[]>;
  /** The claims the fast path made (a task whose commit no notification proved in time), per round. */
  fastClaims: { latency: number[]; throughput: number[] };
  /** Tasks per variant and round of the throughput run. */
  throughputTasks: number;
  /**
   * The step in the transaction (ms) and the whole request on the server (ms, its arrival to its
   * response's `finish`), per request.
   */
  cost: Record<CostVariant, { stepMs: number[]; requestMs: number[] }>;
}

/** Each task's start, as `performance.now()`, by its order's id; resolves its waiter. */
const started = new Map<number, number>();
const waiters = new Map<number, () => void>();
function taskStarted(id: number): void {
  started.set(id, performance.now());
  waiters.get(id)?.();
  waiters.delete(id);
}
function whenStarted(id: number): Promise<void> {
  if (started.has(id)) return Promise.resolve();
  return new Promise((resolve) => waiters.set(id, resolve));
}

const committed = new Map<number, number>();
/** When the fast path's commit notifications arrived, by order id. */
const notified = new Map<number, number>();
const stepMs = new Map<number, number>();
/** Each request's arrival and its response's `finish`, as `performance.now()`, by its order's id. */
const served = new Map<number, { arrived: number; finished: number }>();
let lastId = 0;

const benchTask = defineTask('bench-task', ({ id }: { id: number }) => taskStarted(id), {
  timeoutMs: 10_000,
});

async function main(): Promise<PgBossResult> {
  const [rounds, latencySamples, throughputTasks, costPairs] = process.argv.slice(2).map(Number);
  const server = await startPostgres();
  const url = server.url;
  const pool = new pg.Pool({ connectionString: url, max: POOL_MAX });
  await pool.query(
    'CREATE TABLE orders (id integer PRIMARY KEY); CREATE TABLE bare_jobs (id serial PRIMARY KEY, data jsonb NOT NULL)',
  );
  const durable = pgBossDurable({
    connectionString: url,
    queueName: QUEUES.fast,
    logger: silentLogger(),
  });
  await durable.start();
  let claims = 0;
  const claim = durable.claim.bind(durable);
  durable.claim = (id, leaseMs) => {
    claims++;
    return claim(id, leaseMs);
  };
  // When each commit's notification arrives: this watcher is told before the runner's, made later.
  const orderOfJob = new Map<string, number>();
  const insert = durable.insert.bind(durable);
  durable.insert = async (db, job, leaseMs) => {
    const inserted = await insert(db, job, leaseMs);
    orderOfJob.set(inserted.id, (job.payload as { id: number }).id);
    return inserted;
  };
  durable.watchCommits({
    committed: (jobId) => notified.set(orderOfJob.get(jobId)!, performance.now()),
    unsure: () => undefined,
  });
  /** The claims made by `run`. */
  const claimsOf = async (run: () => Promise<unknown>) => {
    const before = claims;
    await run();
    return claims - before;
  };
  const bg = backgroundTasks({ logger: silentLogger(), durable, concurrency: CONCURRENCY });
  // pg-boss's own: one instance for both workers, its queues with and without NOTIFY.
  const boss = new PgBoss({
    connectionString: url,
    max: POOL_MAX,
    useListenNotify: true,
    openTelemetry: { enabled: false },
  });
  boss.on('error', (error) => process.stderr.write(`pg-boss: ${String(error)}\n`));
  await boss.start();
  await boss.createQueue(QUEUES.poll);
  await boss.createQueue(QUEUES.notify, { notify: true });

  const app = express();
  // The server's own time for each request, so that what this process's client does is not counted.
  app.use((req, res, next) => {
    const arrived = performance.now();
    res.on('finish', () =>
      served.set(Number(req.query.id), { arrived, finished: performance.now() }),
    );
    next();
  });
  app.use(bg);
  app.post(
    '/fast',
    inTransaction(pool, (client, id, res) =>
      res.locals.backgroundTasks.addInTransaction(client, benchTask, { id }),
    ),
  );
  for (const queue of [QUEUES.poll, QUEUES.notify]) {
    app.post(
      `/${queue}`,
      inTransaction(pool, (client, id) =>
        boss.send(
          queue,
          { id },
          { db: { executeSql: (text, values) => client.query(text, values) } },
        ),
      ),
    );
  }
  app.post(
    '/bare',
    inTransaction(pool, (client, id) =>
      client.query('INSERT INTO bare_jobs (data) VALUES ($1)', [
        { task: benchTask.name, payload: { id } },
      ]),
    ),
  );
  const listening = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => listening.once('listening', resolve));
  const client = new Client((listening.address() as AddressInfo).port);

  const work = (queue: string) =>
    boss.work<{ id: number }>(queue, { localConcurrency: CONCURRENCY }, async ([job]) =>
      taskStarted(job.data.id),
    );
  /** Until no job of `queue` waits or runs: pg-boss has marked every one completed. */
  const drained = async (queue: string) => {
    const left = async () =>
      (
        await pool.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state < 'completed'",
          [queue],
        )
      ).rows[0].n;
    while ((await left()) > 0) await sleep(5);
  };

  const result: PgBossResult = {
    node: process.version,
    postgres: (await pool.query<{ server_version: string }>('SHOW server_version')).rows[0]
      .server_version,
    latency: { fast: [], poll: [], notify: [] },
    fastFromResponse: [],
    fastSteps: { responseEnded: [], notified: [] },
    throughput: { fast: [], pgboss: [] },
    fastClaims: { latency: [], throughput: [] },
    throughputTasks,
    cost: {
      addInTransaction: { stepMs: [], requestMs: [] },
      pgbossSend: { stepMs: [], requestMs: [] },
      bareInsert: { stepMs: [], requestMs: [] },
    },
  };

  // Latency: each variant's requests arrive at random; each sample is one task's commit-to-start.
  // Each resolves with the ids of its orders once their tasks have started.
  const latencyOf: Record<LatencyVariant, (samples: number) => Promise<number[]>> = {
    fast: (samples) => arrivals(client, '/fast', samples),
    poll: (samples) => withWorker(QUEUES.poll, () => arrivals(client, `/${QUEUES.poll}`, samples)),
    notify: (samples) =>
      withWorker(QUEUES.notify, () => arrivals(client, `/${QUEUES.notify}`, samples)),
  };
  async function withWorker<T>(queue: string, run: () => Promise<T>): Promise<T> {
    await work(queue);
    try {
      return await run();
    } finally {
      await boss.offWork(queue, { wait: true });
    }
  }
  // Throughput: CONCURRENCY clients at once, from the first request to the last job completed.
  const throughputOf: Record<ThroughputVariant, (tasks: number) => Promise<number>> = {
    fast: (tasks) =>
      timed(
        tasks,
        () => flood(client, '/fast', tasks),
        () => bg.idle(),
      ),
    pgboss: (tasks) =>
      withWorker(QUEUES.notify, () =>
        timed(
          tasks,
          () => flood(client, `/${QUEUES.notify}`, tasks),
          () => drained(QUEUES.notify),
        ),
      ),
  };
  // Cost: one request at a time, each variant in turn; the fast path's task ends before the next.
  const costPaths: Record<CostVariant, string> = {
    addInTransaction: '/fast',
    pgbossSend: `/${QUEUES.poll}`,
    bareInsert: '/bare',
  };
  const costOnce = async (variant: CostVariant) => {
    const id = ++lastId;
    await client.post(`${costPaths[variant]}?id=${id}`);
    if (variant === 'addInTransaction') await bg.idle();
    const { arrived, finished } = served.get(id)!;
    return { stepMs: stepMs.get(id)!, requestMs: finished - arrived };
  };

  const latencyVariants = Object.keys(latencyOf) as LatencyVariant[];
  for (const variant of latencyVariants) await latencyOf[variant](Math.ceil(latencySamples / 4));
  const throughputVariants = Object.keys(throughputOf) as ThroughputVariant[];
  for (const variant of throughputVariants)
    await throughputOf[variant](Math.ceil(throughputTasks / 5));
  const costVariants = Object.keys(costPaths) as CostVariant[];
  for (let i = 0; i < Math.ceil(costPairs / 5); i++)
    for (const variant of costVariants) await costOnce(variant);
  // pg-boss's jobs of the cost part are nobody's: they are not left for the polling worker.
  await boss.deleteAllJobs(QUEUES.poll);

  for (let round = 0; round < rounds; round++) {
    for (const variant of rotate(latencyVariants, round)) {
      let ids: number[] = [];
      const made = await claimsOf(async () => (ids = await latencyOf[variant](latencySamples)));
      result.latency[variant].push(ids.map((id) => started.get(id)! - committed.get(id)!));
      if (variant === 'fast') {
        result.fastFromResponse.push(ids.map((id) => started.get(id)! - served.get(id)!.finished));
        result.fastSteps.responseEnded.push(
          ids.map((id) => served.get(id)!.finished - committed.get(id)!),
        );
        result.fastSteps.notified.push(ids.map((id) => notified.get(id)! - committed.get(id)!));
        result.fastClaims.latency.push(made);
      }
    }
    for (const variant of rotate(throughputVariants, round)) {
      let perSecond = 0;
      const made = await claimsOf(
        async () => (perSecond = await throughputOf[variant](throughputTasks)),
      );
      result.throughput[variant].push(perSecond);
      if (variant === 'fast') result.fastClaims.throughput.push(made);
    }
    for (let i = 0; i < costPairs; i++) {
      for (const variant of rotate(costVariants, round + i)) {
        const sample = await costOnce(variant);
        result.cost[variant].stepMs.push(sample.stepMs);
        result.cost[variant].requestMs.push(sample.requestMs);
      }
    }
    await boss.deleteAllJobs(QUEUES.poll);
  }

  client.close();
  listening.close();
  await boss.stop({ graceful: false });
  await durable.close();
  await pool.end();
  await server.stop();
  return result;
}

/**
 * A route that writes an order and its task in one transaction, on a client of `pool`: `enqueue`
 * is the variant's step, timed. The commit's moment is what latency is measured from.
 */
function inTransaction(
  pool: pg.Pool,
  enqueue: (client: pg.PoolClient, id: number, res: express.Response) => Promise<unknown>,
): RequestHandler {
  return async (req, res, next) => {
    const id = Number(req.query.id);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO orders (id) VALUES ($1)', [id]);
      const before = performance.now();
      await enqueue(client, id, res);
      stepMs.set(id, performance.now() - before);
      await client.query('COMMIT');
      committed.set(id, performance.now());
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      return next(error);
    } finally {
      client.release();
    }
    res.status(201).end();
  };
}

/** `samples` requests at random moments (exponential gaps); resolves with their ids once their tasks started. */
async function arrivals(client: Client, path: string, samples: number): Promise<number[]> {
  const ids: number[] = [];
  const sent: Array<Promise<void>> = [];
  for (let i = 0; i < samples; i++) {
    const id = ++lastId;
    ids.push(id);
    sent.push(client.post(`${path}?id=${id}`));
    await sleep(-Math.log(1 - Math.random()) * (1_000 / ARRIVALS_PER_SECOND));
  }
  await Promise.all(sent);
  await Promise.all(ids.map(whenStarted));
  return ids;
}

/** `tasks` requests from CONCURRENCY clients, each sending its next as soon as its last is answered. */
async function flood(client: Client, path: string, tasks: number): Promise<void> {
  const ids: number[] = [];
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (ids.length < tasks) {
        const id = ++lastId;
        ids.push(id);
        await client.post(`${path}?id=${id}`);
      }
    }),
  );
  await Promise.all(ids.map(whenStarted));
}

/** Tasks per second from the start of `load` to the end of `finished`. */
async function timed(
  tasks: number,
  load: () => Promise<void>,
  finished: () => Promise<void>,
): Promise<number> {
  const start = performance.now();
  await load();
  await finished();
  return tasks / ((performance.now() - start) / 1_000);
}

/** A keep-alive HTTP client for POSTs on 127.0.0.1; a status other than 201 is an error. */
class Client {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  constructor(private readonly port: number) {}

  post(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: this.port, path, method: 'POST', agent: this.agent },
        (res) => {
          res.resume();
          res.on('end', () =>
            res.statusCode === 201 ? resolve() : reject(new Error(`${path}: ${res.statusCode}`)),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

function rotate<T>(list: T[], by: number): T[] {
  const at = by % list.length;
  return [...list.slice(at), ...list.slice(0, at)];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

childMain(main);
