/**
 * Tasks added with `addInTransaction()`, the fast path of a transactional durable queue. Each job
 * is inserted through the caller's transaction, out of the workers' reach for a lease; once the
 * response has ended this process claims it by id, and the runner runs it like any task; how it
 * ended is then written back to the database (done, failed over to the workers' retries, or given
 * back). A task this process does not finish is left to the workers, counted and logged so: it is
 * never lost, and never run here without a claim.
 */
import { performance } from 'node:perf_hooks';
import type { JobLease } from './attempting';
import { isDefinedTask, type DefinedTask } from './define-task';
import {
  isTransactional,
  type DurableJob,
  type DurableQueue,
  type TransactionClient,
  type TransactionalQueue,
} from './durable';
import type { LeftState, LogLine, TaskObserver } from './observer';
import { MAX_TIMER_MS, show, type ResolvedPolicy } from './options';
import type { RequestQueue } from './request-queue';
import type { Task } from './task';
import { runInSpan } from './telemetry';
import { settle, toError } from './thrown';
import { toTask } from './to-task';

/** What the runner does when a claim ends. */
export interface ClaimEnds {
  /** The job was claimed: run the task here. */
  runHere(queue: RequestQueue, task: Task): void;
  /** The task was left to the workers (counted): the queue may have nothing left. */
  left(queue: RequestQueue): void;
  /** A write-back to the database ended: `idle()` may resolve. */
  settled(): void;
}

/**
 * The task that `addInTransaction(db, task, payload)` adds, checked at the call site: the durable
 * queue must be transactional, `db` a SQL client, `task` a defined task with a timeout, and the
 * payload must pass `add()`'s check. Throws a TypeError that says what is wrong.
 */
export function transactionalTask(
  durable: DurableQueue | undefined,
  db: unknown,
  task: unknown,
  payload: unknown,
  defaults: ResolvedPolicy,
  maxPayloadBytes: number,
): Task {
  const where = 'addInTransaction()';
  if (durable === undefined) {
    throw new TypeError(
      `${where}: this middleware has no durable queue; create it with backgroundTasks({ durable: pgBossDurable(...) }) ` +
        'from express-background-tasks/pg-boss to write tasks in a SQL transaction',
    );
  }
  if (!isTransactional(durable)) {
    throw new TypeError(
      `${where}: the middleware's durable queue cannot join a SQL transaction (Redis cannot: a BullMQ job ` +
        'is written outside it, so the row and its task could not commit as one); use pgBossDurable(...) ' +
        'from express-background-tasks/pg-boss',
    );
  }
  if (!isClient(db)) {
    throw new TypeError(
      `${where}: db must be the transaction's client: a node-postgres client with query(text, values), ` +
        `or pg-boss's { executeSql(text, values) } (fromKnex, fromPrisma, …), got ${show(db)}`,
    );
  }
  if (!isDefinedTask(task))
    throw new TypeError(`${where}: task must be a defineTask() task, got ${show(task)}`);
  const queued = toTask(task as DefinedTask<unknown>, [payload], defaults, maxPayloadBytes);
  if (queued.policy.timeoutMs === 0) {
    throw new TypeError(
      `${where}: task "${queued.name}" has no timeout (timeoutMs: 0); a transactional task needs one: ` +
        'its lease, how long the workers leave its job to this process, is derived from it',
    );
  }
  return queued;
}

export class Claims {
  /** Inserting, waiting for the response to end, or being claimed: what drain() gives up on. */
  private readonly outstanding = new Set<Claim>();
  /** Inserted, by request, until the response ends. */
  private readonly waiting = new Map<RequestQueue, Claim[]>();
  /** Write-backs in flight: `idle()` waits for them, so that the database agrees once it resolves. */
  settling = 0;

  constructor(
    private readonly durable: TransactionalQueue,
    private readonly observer: TaskObserver,
    /** How much longer than the longest run here a lease lasts: room for the write-back. */
    private readonly leaseMarginMs: number,
    private readonly ends: ClaimEnds,
  ) {}

  /**
   * Inserts the task's job through `db`. Resolves once it is in the caller's transaction; rejects
   * if the insert failed (the task then counts as never added). With `full` (maxPending tasks are
   * pending) the job is inserted with no lease, for the workers alone.
   */
  insert(queue: RequestQueue, task: Task, db: TransactionClient, full: boolean): Promise<void> {
    const trace = this.observer.enqueueStarted(task, queue);
    const job: DurableJob = {
      name: task.name,
      payload: task.args[0],
      request: queue.describeRequest(),
      ...task.policy,
      ...(trace !== undefined && { trace }),
    };
    const leaseMs = full ? 0 : this.leaseOf(task.policy);
    const claim = new Claim(this, queue, task, leaseMs);
    this.outstanding.add(claim);
    const { span } = task;
    // Inside the producer span: what a pg instrumentation traces is its child.
    const insert = () => this.durable.insert(db, job, leaseMs);
    return call(
      span === undefined ? insert : () => runInSpan(span, task.parentContext, insert, undefined),
    ).then(
      (id) => {
        if (claim.givenUp) return; // drain() counted it; the job is the transaction's
        this.observer.inserted(task);
        claim.jobId = String(id);
        task.lease = claim;
        if (full) {
          this.outstanding.delete(claim);
          this.leave(claim, 'queue full', 'warn');
        } else if (queue.ended) this.claim(claim);
        else {
          claim.state = 'waiting for the response';
          const claims = this.waiting.get(queue);
          if (claims === undefined) this.waiting.set(queue, [claim]);
          else claims.push(claim);
        }
      },
      (thrown: unknown) => {
        this.outstanding.delete(claim);
        if (!claim.givenUp) {
          this.observer.insertFailed(task, thrown);
          this.ends.left(queue);
        }
        throw thrown;
      },
    );
  }

  /** The request's response has ended: claims its inserted jobs. */
  responseEnded(queue: RequestQueue): void {
    const claims = this.waiting.get(queue);
    if (claims === undefined) return;
    this.waiting.delete(queue);
    for (const claim of claims) this.claim(claim);
  }

  /** Gives up on every task not yet claimed, each left to the workers; returns their lines. */
  abandonAll(): LogLine[] {
    const lines: LogLine[] = [];
    for (const claim of this.outstanding) {
      claim.givenUp = true;
      // Outstanding claims are inserting, waiting for the response, or claiming.
      lines.push(this.observer.leftToWorkers(claim.task, claim.queue, claim.state as LeftState));
    }
    this.outstanding.clear();
    this.waiting.clear();
    return lines;
  }

  /** The task ended here for good: tells the database (see `Claim.ended`). */
  writeBack(
    claim: Claim,
    outcome: 'succeeded' | 'failed' | 'left_to_workers',
    error?: Error,
  ): void {
    if (claim.state !== 'claimed') return; // not this process's job: nothing to write
    claim.state = 'ended';
    const { durable } = this;
    const id = claim.jobId;
    const write =
      outcome === 'succeeded'
        ? call(() => durable.complete(id)).then((done) => {
            if (done !== true) this.observer.jobNotSettled(claim.task, claim.queue, outcome);
          })
        : call(() => (outcome === 'failed' ? durable.fail(id, error!) : durable.release(id)));
    this.settling++;
    write
      .catch((thrown: unknown) =>
        this.observer.jobNotSettled(claim.task, claim.queue, outcome, toError(thrown)),
      )
      .finally(() => {
        this.settling--;
        this.ends.settled();
      });
  }

  /** How long the workers leave a claimed job to this process: every attempt and backoff here, and the margin. */
  leaseOf(policy: ResolvedPolicy): number {
    let ms = (policy.retries + 1) * policy.timeoutMs + this.leaseMarginMs;
    for (let attempt = 1; attempt <= policy.retries; attempt++)
      ms += Math.min(MAX_TIMER_MS, policy.retryDelayMs * 2 ** (attempt - 1));
    return ms;
  }

  /** Half the margin is kept for the write-back after the last attempt an attempt start allows. */
  get reserveMs(): number {
    return this.leaseMarginMs / 2;
  }

  private claim(claim: Claim): void {
    claim.state = 'claiming';
    const sentAt = performance.now();
    call(() => this.durable.claim(claim.jobId, claim.leaseMs)).then(
      (claimed) => {
        this.outstanding.delete(claim);
        if (claimed === true) {
          claim.state = 'claimed';
          claim.deadline = sentAt + claim.leaseMs;
          // drain() gave it up while the claim was in flight: the lease is given back at once.
          if (claim.givenUp) this.writeBack(claim, 'left_to_workers');
          else this.ends.runHere(claim.queue, claim.task);
        } else if (!claim.givenUp) this.leave(claim, 'not claimed', 'info');
      },
      (thrown: unknown) => {
        this.outstanding.delete(claim);
        if (!claim.givenUp) this.leave(claim, 'claim failed', 'error', toError(thrown));
      },
    );
  }

  private leave(
    claim: Claim,
    state: LeftState,
    level: 'info' | 'warn' | 'error',
    error?: Error,
  ): void {
    this.observer.write(this.observer.leftToWorkers(claim.task, claim.queue, state, error), level);
    this.ends.left(claim.queue);
  }
}

/** One task's job, from its insert to the write-back of how it ended. */
class Claim implements JobLease {
  state: 'inserting' | 'waiting for the response' | 'claiming' | 'claimed' | 'ended' = 'inserting';
  jobId = '';
  /** `performance.now()` when the lease ends, once claimed. */
  deadline = 0;
  /** drain() gave it up before it was claimed: counted, and not to be run here. */
  givenUp = false;

  constructor(
    private readonly claims: Claims,
    readonly queue: RequestQueue,
    readonly task: Task,
    readonly leaseMs: number,
  ) {}

  covers(timeoutMs: number): boolean {
    return performance.now() + timeoutMs + this.claims.reserveMs <= this.deadline;
  }

  ended(outcome: 'succeeded' | 'failed' | 'left_to_workers', error?: Error): void {
    this.claims.writeBack(this, outcome, error);
  }
}

/** Calls `fn`, a method of the durable queue, as a native promise: a sync throw becomes a rejection. */
function call<T>(fn: () => PromiseLike<T> | T): Promise<T> {
  try {
    return settle(fn()) as Promise<T>;
  } catch (thrown) {
    return Promise.reject(thrown);
  }
}

function isClient(db: unknown): db is TransactionClient {
  if (db === null || (typeof db !== 'object' && typeof db !== 'function')) return false;
  const client = db as { query?: unknown; executeSql?: unknown };
  return typeof client.executeSql === 'function' || typeof client.query === 'function';
}
