/**
 * The seam between the in-process runner and a durable queue (BullMQ in
 * `express-background-tasks/bullmq`, pg-boss in `express-background-tasks/pg-boss`): what a
 * durable queue must offer, what it is handed for each task, and what a transactional one (a
 * queue in the application's own SQL database) offers beyond that.
 */
import type { TraceCarrier } from './telemetry';
import type { TaskRequest } from './types';

/** One task handed to a durable queue, when the response that queued it has ended. */
export interface DurableJob {
  /** The name given to `defineTask`: how a worker finds the handler. */
  readonly name: string;
  /** The payload, already checked to survive JSON. */
  readonly payload: unknown;
  readonly request: TaskRequest;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly retryDelayMs: number;
  /**
   * The W3C trace context of the hand-off's `PRODUCER` span, when an OpenTelemetry SDK records it:
   * a worker's span for the job continues the trace.
   */
  readonly trace?: TraceCarrier;
}

export interface DurableQueue {
  /** Stores the job; rejects when it could not (the task then runs in this process, and that is logged). */
  enqueue(job: DurableJob): Promise<unknown>;
  /** Closes connections. */
  close?(): Promise<void>;
}

/** A node-postgres client (or pool) inside the caller's transaction: `query(text, values)` resolving `{ rows }`. */
export interface QueryClient {
  query(text: string, values?: unknown[]): PromiseLike<{ rows: unknown[] }>;
}

/** pg-boss's database interface (`fromKnex`, `fromKysely`, `fromDrizzle`, `fromPrisma`, `fromPglite` make one). */
export interface ExecuteSqlClient {
  executeSql(text: string, values?: unknown[]): PromiseLike<{ rows: unknown[] }>;
}

/** What `addInTransaction()` writes through: the caller's transaction, in either shape. */
export type TransactionClient = QueryClient | ExecuteSqlClient;

/** A job inserted by a transactional queue. */
export interface InsertedJob {
  readonly id: string;
  /**
   * Set when the queue will prove the job's commit (see `TransactionalQueue.watchCommits`):
   * `performance.now()` at or before which its lease began, so that this process knows when the
   * lease ends without asking the database.
   */
  readonly leaseFrom?: number;
}

/** What a transactional queue that proves commits tells (see `TransactionalQueue.watchCommits`). */
export interface CommitWatcher {
  /** The transaction that inserted job `id` has committed. An id nobody waits for is ignored. */
  committed(id: string): void;
  /**
   * Proofs may have been missed (the queue's listener reconnected) or stop coming (it closed):
   * every job inserted with `leaseFrom` and not started yet is claimed instead.
   */
  unsure(): void;
}

/**
 * A durable queue stored in the application's SQL database, so that a job can be written in the
 * application's own transaction and run by this process right after the response (the fast
 * path), with the workers as the fallback. Each method is one atomic statement.
 */
export interface TransactionalQueue extends DurableQueue {
  /** How much longer than the longest run of a task in this process its lease lasts, in milliseconds. */
  readonly leaseMarginMs: number;
  /**
   * How long after the response a job inserted with `leaseFrom` waits for the proof of its commit
   * before it is claimed instead, in milliseconds. Read only with `watchCommits`.
   */
  readonly commitWaitMs?: number;
  /**
   * Inserts the job through `db`, inside the caller's transaction, so that no worker takes it for
   * `leaseMs`. Resolves once the insert is done; rejects if it failed. With `leaseMs` 0 (a job for
   * the workers alone) its commit is never proven.
   */
  insert(db: TransactionClient, job: DurableJob, leaseMs: number): Promise<InsertedJob>;
  /**
   * Optional: proofs of commit that cost no round trip. `watcher` is told of each job inserted
   * with `leaseFrom` once its transaction has committed, and never of one rolled back; a job so
   * proven may run with no `claim()`, under the lease its insert set.
   */
  watchCommits?(watcher: CommitWatcher): void;
  /**
   * Takes the job for this process for `leaseMs` more. True when it was waiting (committed, and no
   * worker has started it); false when there is none to take (rolled back, not committed yet, done,
   * or started by a worker).
   */
  claim(id: string, leaseMs: number): Promise<boolean>;
  /** Marks a claimed job done. False when it was done already (a worker ran it after the lease). */
  complete(id: string): Promise<boolean>;
  /** Records that every attempt here failed, with the last error: the queue's retries take it over. */
  fail(id: string, error: Error): Promise<void>;
  /** Ends this process's lease on a job it will not finish, so that a worker takes it at once. */
  release(id: string): Promise<void>;
}

/** Whether `durable` can join the caller's transaction. */
export function isTransactional(durable: DurableQueue | undefined): durable is TransactionalQueue {
  const queue = durable as Partial<TransactionalQueue> | undefined;
  return (
    typeof queue?.insert === 'function' &&
    typeof queue.claim === 'function' &&
    typeof queue.complete === 'function' &&
    typeof queue.fail === 'function' &&
    typeof queue.release === 'function'
  );
}
