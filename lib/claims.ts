/**
 * Tasks added with `addInTransaction()`, the fast path of a transactional durable queue. Each job
 * is inserted through the caller's transaction, out of the workers' reach for a lease; once the
 * response has ended this process claims it by id, and the runner runs it like any task; how it
 * ended is then written back to the database (done, failed over to the workers' retries, or given
 * back). A task this process does not finish is left to the workers, counted and logged so: it is
 * never lost, and never run here without a claim.
 */
import { performance } from 'node:perf_hooks';
import type { JobLease, LeaseOutcome } from './attempting';
import type { TransactionClient, TransactionalQueue } from './durable';
import { callDurable, storeJob } from './hand-offs';
import type { LeftState, LogLine, TaskObserver } from './observer';
import { MAX_TIMER_MS, type ResolvedPolicy } from './options';
import type { RequestQueue } from './request-queue';
import type { Task } from './task';
import { toError } from './thrown';

/** What the runner does when a claim ends. */
export interface ClaimEnds {
  /** The job was claimed: run the task here. */
  runHere(queue: RequestQueue, task: Task): void;
  /** The task was left to the workers (counted): the queue may have nothing left. */
  left(queue: RequestQueue): void;
  /** A write-back to the database ended: `idle()` may resolve. */
  settled(): void;
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
    const leaseMs = full ? 0 : this.leaseOf(task.policy);
    const claim = new Claim(this, queue, task, leaseMs);
    this.outstanding.add(claim);
    return storeJob(this.observer, queue, task, (job) =>
      this.durable.insert(db, job, leaseMs),
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

  /**
   * The task ended here for good: tells the database (see `Claim.ended`). Past its lease a worker
   * may have the job: that is logged, and a failure is not written, since pg-boss would then retry
   * a job that may be running on a worker; the workers take it as it is.
   */
  writeBack(claim: Claim, outcome: LeaseOutcome, error?: Error): void {
    if (claim.state !== 'claimed') return; // not this process's job: nothing to write
    claim.state = 'ended';
    const overrunMs = performance.now() - claim.deadline;
    const outran = overrunMs > 0;
    // A task that never started here (it waited past its lease) cannot run again: no line.
    if (outran && claim.task.attempt > 0)
      this.observer.leaseOutrun(claim.task, claim.queue, outcome, overrunMs);
    const write = this.written(claim, outcome, error, outran);
    if (write === undefined) return;
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

  /** The write-back of how the task ended, or undefined when nothing is written. */
  private written(
    claim: Claim,
    outcome: LeaseOutcome,
    error: Error | undefined,
    outran: boolean,
  ): Promise<unknown> | undefined {
    const { durable } = this;
    const id = claim.jobId;
    if (outcome === 'succeeded') {
      return callDurable(() => durable.complete(id)).then((done) => {
        // Past the lease, leaseOutrun() has said so already.
        if (done !== true && !outran) this.observer.jobNotSettled(claim.task, claim.queue, outcome);
      });
    }
    if (outran) return undefined;
    return callDurable(() =>
      outcome === 'failed' ? durable.fail(id, error!) : durable.release(id),
    );
  }

  private claim(claim: Claim): void {
    claim.state = 'claiming';
    const sentAt = performance.now();
    callDurable(() => this.durable.claim(claim.jobId, claim.leaseMs)).then(
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

  ended(outcome: LeaseOutcome, error?: Error): void {
    this.claims.writeBack(this, outcome, error);
  }
}
