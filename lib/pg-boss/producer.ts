/**
 * `pgBossDurable()`: the durable queue on pg-boss. A defined task added with `add()` becomes a job
 * when the response ends, as with BullMQ; one added with `addInTransaction()` is inserted through
 * the caller's transaction with a notification that proves its commit (commit-notices.ts), and
 * run here after the response, or claimed first when no proof came (claims.ts). Each job carries
 * the task's policy as pg-boss options: its retries and backoff, its expiry, and the dead-letter
 * queue of the last failure.
 */
import { performance } from 'node:perf_hooks';
import type { Db as IDatabase, PgBoss, SendOptions } from 'pg-boss';
import type { Logger } from 'winston';
import type {
  CommitWatcher,
  DurableJob,
  ExecuteSqlClient,
  InsertedJob,
  QueryClient,
  TransactionClient,
  TransactionalQueue,
} from '../durable';
import { inTime } from '../in-time';
import { useLogger } from '../logging';
import { MAX_TIMER_MS, checkInteger, checkOptionsObject } from '../options';
import { errorFields } from '../thrown';
import { CommitNotices } from './commit-notices';
import { BossConnection, resolveLocation, type PgBossLocation } from './connection';

export interface PgBossDurableOptions extends PgBossLocation {
  /** Where pg-boss's errors are logged (each at most once a minute). Default: JSON lines on the console. */
  logger?: Logger;
  /**
   * How long a send after the response (`add()`) may take, the first connection and pg-boss's
   * migrations included, before it is given up and the task runs in-process. Default: `5000`.
   */
  sendTimeoutMs?: number;
  /**
   * How much longer than the longest run of a transactional task here (every attempt, timeout and
   * backoff) the workers leave its job to this process. Default: `10000`.
   */
  leaseMarginMs?: number;
  /**
   * How long, once the response has ended, a transactional task whose commit has not been
   * notified yet waits for the notification before it is claimed instead (a rolled-back task is
   * known no sooner; a route that commits after responding has this long to do it). Default: `100`.
   */
  commitWaitMs?: number;
}

/** A durable queue on pg-boss. `enqueue` resolves with the job's id. */
export interface PgBossDurable extends TransactionalQueue {
  enqueue(job: DurableJob): Promise<string>;
  readonly commitWaitMs: number;
  watchCommits(watcher: CommitWatcher): void;
  /**
   * Starts pg-boss (its schema and migrations), creates the queue and its dead-letter queue, and
   * opens the listener of commit notifications, now rather than at the first job. Needed before the
   * first `addInTransaction()` on a database with a single connection (PGlite), where none of this
   * could run beside the open transaction.
   */
  start(): Promise<void>;
  /** Stops the pg-boss instance made here (one given as `boss` is left to the application). */
  close(): Promise<void>;
}

/** What a job made by `pgBossDurable()` holds, and what `startWorker()` reads back. */
export interface PgBossJobData {
  /** The `defineTask` name: one queue holds every task's jobs. */
  task: string;
  payload: unknown;
  request: DurableJob['request'];
  /** The W3C trace context of the hand-off, when it was traced: the worker's span continues it. */
  trace?: DurableJob['trace'];
}

/** pg-boss's longest expiry. */
const MAX_EXPIRY_SECONDS = 24 * 60 * 60;
/** Past this expiry a job has a heartbeat, so that a dead worker's job is retried sooner. */
const HEARTBEAT_AFTER_SECONDS = 60;
const HEARTBEAT_SECONDS = 30;
/** The expiry outlasts the task's timeout by this much: the worker's own timeout comes first, with its error. */
const EXPIRY_GRACE_SECONDS = 5;

/**
 * Creates the durable queue for `backgroundTasks({ durable })`. Options are checked here; pg-boss is
 * started (schema, migrations, queues) by the first job, so creating it never blocks nor fails on
 * the database.
 */
export function pgBossDurable(options: PgBossDurableOptions): PgBossDurable {
  const where = 'pgBossDurable';
  const given = checkOptionsObject(where, options, [
    'connectionString',
    'boss',
    'queueName',
    'deadLetterQueue',
    'logger',
    'sendTimeoutMs',
    'leaseMarginMs',
    'commitWaitMs',
  ]);
  const location = resolveLocation(where, given);
  const logger = useLogger(where, given.logger);
  return new PgBossProducer(
    new BossConnection(location, logger, 'producer'),
    checkInteger(where, 'sendTimeoutMs', given.sendTimeoutMs, 5_000, 1, MAX_TIMER_MS),
    checkInteger(where, 'leaseMarginMs', given.leaseMarginMs, 10_000, 0, MAX_TIMER_MS),
    checkInteger(where, 'commitWaitMs', given.commitWaitMs, 100, 0, MAX_TIMER_MS),
  );
}

/** The pg-boss options of a task's job: its retries, backoff, expiry and heartbeat. */
export function jobOptions(job: DurableJob): SendOptions {
  const expireInSeconds =
    job.timeoutMs === 0
      ? MAX_EXPIRY_SECONDS
      : Math.min(MAX_EXPIRY_SECONDS, Math.ceil(job.timeoutMs / 1_000) + EXPIRY_GRACE_SECONDS);
  return {
    retryLimit: job.retries,
    retryDelay: Math.ceil(job.retryDelayMs / 1_000),
    retryBackoff: true,
    expireInSeconds,
    ...(expireInSeconds > HEARTBEAT_AFTER_SECONDS && { heartbeatSeconds: HEARTBEAT_SECONDS }),
  };
}

class PgBossProducer implements PgBossDurable {
  private closed = false;
  private readonly notices: CommitNotices;

  constructor(
    private readonly connection: BossConnection,
    private readonly sendTimeoutMs: number,
    readonly leaseMarginMs: number,
    readonly commitWaitMs: number,
  ) {
    this.notices = new CommitNotices((error) => connection.report(error));
  }

  async enqueue(job: DurableJob): Promise<string> {
    const send = this.send(job, {});
    // A send that outlives its timeout may still land: the task then runs here and on a worker.
    if (!(await inTime(send, this.sendTimeoutMs)))
      throw new Error(`pg-boss send timed out after ${this.sendTimeoutMs} ms`);
    return send;
  }

  // The lease began no later than the moment before the insert was sent (its own transaction's
  // start, for a client outside any: a pool) nor than the caller's transaction's start.
  async insert(db: TransactionClient, job: DurableJob, leaseMs: number): Promise<InsertedJob> {
    await this.listening();
    const sql = executeSqlOf(db);
    const sentAt = performance.now();
    const id = await this.send(job, { db: sql, startAfter: leaseMs / 1_000 });
    if (leaseMs === 0) return { id };
    const began = await this.notices.announce(sql, id);
    return began === undefined ? { id } : { id, leaseFrom: Math.min(sentAt, began) };
  }

  watchCommits(watcher: CommitWatcher): void {
    this.notices.watch(watcher);
  }

  // update() changes only a job whose state is still before 'active', in one statement that re-checks
  // it on the locked row: a compare-and-set against a worker's fetch (see the README).
  async claim(id: string, leaseMs: number): Promise<boolean> {
    const boss = await this.ready();
    const { updated } = await boss.update(this.queueName, undefined, {
      id,
      startAfter: leaseMs / 1_000,
    });
    return updated === 1;
  }

  async complete(id: string): Promise<boolean> {
    const boss = await this.ready();
    const result = await boss.complete(this.queueName, id, null, { includeQueued: true });
    // Typed `{}` in pg-boss 12.38's declarations; its result is `{ jobs, requested, affected, settled }`.
    return (result as { affected?: unknown }).affected === 1;
  }

  async fail(id: string, error: Error): Promise<void> {
    const boss = await this.ready();
    await boss.fail(this.queueName, id, errorFields(error));
  }

  async release(id: string): Promise<void> {
    const boss = await this.ready();
    await boss.update(this.queueName, undefined, { id, startAfter: 0 });
  }

  start(): Promise<void> {
    return this.listening();
  }

  async close(): Promise<void> {
    this.closed = true;
    // Its own connection: stopping pg-boss (or not, for an application's instance) leaves it open.
    await this.notices.close();
    await this.connection.close();
  }

  private get queueName(): string {
    return this.connection.location.queueName;
  }

  private ready(): Promise<PgBoss> {
    if (this.closed) return Promise.reject(new Error('pgBossDurable(): closed'));
    return this.connection.ready();
  }

  /** Ready, and listening for commits when the database can: opened by the first insert or start(). */
  private async listening(): Promise<void> {
    const boss = await this.ready();
    await this.notices.opened(boss.getDb());
  }

  private async send(job: DurableJob, options: SendOptions): Promise<string> {
    const boss = await this.ready();
    const data: PgBossJobData = {
      task: job.name,
      payload: job.payload,
      request: job.request,
      ...(job.trace !== undefined && { trace: job.trace }),
    };
    const id = await boss.send(this.queueName, data, { ...jobOptions(job), ...options });
    // Only a singleton or throttled send resolves null, and these jobs are neither.
    if (id === null) throw new Error('pg-boss stored no job');
    return id;
  }
}

/** pg-boss's `{ executeSql }` for either kind of client (it wants a native promise back). */
function executeSqlOf(db: TransactionClient): IDatabase {
  if (typeof (db as ExecuteSqlClient).executeSql === 'function') {
    const client = db as ExecuteSqlClient;
    return { executeSql: async (text, values) => await client.executeSql(text, values) };
  }
  const client = db as QueryClient;
  return { executeSql: async (text, values) => await client.query(text, values) };
}
