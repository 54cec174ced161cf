/**
 * `pgBossDurable()`: the durable queue on pg-boss. A defined task added with `add()` becomes a job
 * when the response ends, as with BullMQ; one added with `addInTransaction()` is inserted through
 * the caller's transaction, claimed after the response and run here (claims.ts). Each job carries
 * the task's policy as pg-boss options: its retries and backoff, its expiry, and the dead-letter
 * queue of the last failure.
 */
import type { Db as IDatabase, PgBoss, SendOptions } from 'pg-boss';
import type { Logger } from 'winston';
import type {
  DurableJob,
  ExecuteSqlClient,
  QueryClient,
  TransactionClient,
  TransactionalQueue,
} from '../durable';
import { inTime } from '../in-time';
import { useLogger } from '../logging';
import { MAX_TIMER_MS, checkInteger, checkOptionsObject } from '../options';
import { errorFields } from '../thrown';
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
}

/** A durable queue on pg-boss. `enqueue` resolves with the job's id. */
export interface PgBossDurable extends TransactionalQueue {
  enqueue(job: DurableJob): Promise<string>;
  /**
   * Starts pg-boss (its schema and migrations) and creates the queue and its dead-letter queue now,
   * rather than at the first job. Needed before the first `addInTransaction()` on a database with a
   * single connection (PGlite), where pg-boss's own start-up could not run beside the open transaction.
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
  ]);
  const location = resolveLocation(where, given);
  const logger = useLogger(where, given.logger);
  return new PgBossProducer(
    new BossConnection(location, logger, 'producer'),
    checkInteger(where, 'sendTimeoutMs', given.sendTimeoutMs, 5_000, 1, MAX_TIMER_MS),
    checkInteger(where, 'leaseMarginMs', given.leaseMarginMs, 10_000, 0, MAX_TIMER_MS),
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

  constructor(
    private readonly connection: BossConnection,
    private readonly sendTimeoutMs: number,
    readonly leaseMarginMs: number,
  ) {}

  async enqueue(job: DurableJob): Promise<string> {
    const send = this.send(job, {});
    // A send that outlives its timeout may still land: the task then runs here and on a worker.
    if (!(await inTime(send, this.sendTimeoutMs)))
      throw new Error(`pg-boss send timed out after ${this.sendTimeoutMs} ms`);
    return send;
  }

  insert(db: TransactionClient, job: DurableJob, leaseMs: number): Promise<string> {
    return this.send(job, { db: executeSqlOf(db), startAfter: leaseMs / 1_000 });
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

  async start(): Promise<void> {
    await this.ready();
  }

  close(): Promise<void> {
    this.closed = true;
    return this.connection.close();
  }

  private get queueName(): string {
    return this.connection.location.queueName;
  }

  private ready(): Promise<PgBoss> {
    if (this.closed) return Promise.reject(new Error('pgBossDurable(): closed'));
    return this.connection.ready();
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
