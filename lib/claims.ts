/**
 * Tasks added with `addInTransaction()`, the fast path of a transactional durable queue. Each job
 * is inserted through the caller's transaction, out of the workers' reach for a lease. Once the
 * response has ended, the runner runs it here like any task, as soon as its commit is proven:
 * by the queue's notification of the commit when the lease left covers every attempt, else by
 * claiming the job by id (which also renews the lease). How it ended is then written back to the
 * database (done, failed over to the workers' retries, or given back). A task this process does
 * not finish is left to the workers, counted and logged so: it is never lost, and never run here
 * before its commit is proven.
 */
import { performance } from 'node:perf_hooks';
import type { JobLease, LeaseOutcome } from './attempting';
import type { InsertedJob, TransactionClient, TransactionalQueue } from './durable';
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
  /** Inserting, waiting for the response or the commit, or being claimed: what drain() gives up on. */
  private readonly outstanding = new Set<Claim>();
  /** Inserted, by request, until the response ends. */
  private readonly waiting = new Map<RequestQueue, Claim[]>();
  /**
   * By job id, the inserted jobs whose commit the queue is to prove, until they start or are
   * claimed: the only ones a proof can start.
   */
  private readonly proving = new Map<string, Claim>();
  /** How long after the response a job waits for the proof of its commit before it is claimed. */
  private readonly commitWaitMs: number;
  /** Write-backs in flight: `idle()` waits for them, so that the database agrees once it resolves. */
  settling = 0;

  constructor(
    private readonly durable: TransactionalQueue,
    private readonly observer: TaskObserver,
    /** How much longer than the longest run here a lease lasts: room for the write-back. */
    private readonly leaseMarginMs: number,
    private readonly ends: ClaimEnds,
  ) {
    this.commitWaitMs = durable.commitWaitMs ?? 0;
    durable.watchCommits?.({
      committed: (id) => this.committed(id),
      unsure: () => this.unsure(),
    });
  }

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
      (inserted: InsertedJob) => {
        if (claim.givenUp) return; // drain() counted it; the job is the transaction's
        this.observer.inserted(task);
        claim.jobId = String(inserted.id);
        task.lease = claim;
        if (full) {
          this.outstanding.delete(claim);
          this.leave(claim, 'queue full', 'warn');
          return;
        }
        if (inserted.leaseFrom !== undefined) {
          claim.leaseFrom = inserted.leaseFrom;
          this.proving.set(claim.jobId, claim);
        }
        if (queue.ended) this.proceed(claim);
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

  /** The request's response has ended: its inserted jobs go on. */
  responseEnded(queue: RequestQueue): void {
    const claims = this.waiting.get(queue);
    if (claims === undefined) return;
    this.waiting.delete(queue);
    for (const claim of claims) this.proceed(claim);
  }

  /** Gives up on every task not yet claimed, each left to the workers; returns their lines. */
  abandonAll(): LogLine[] {
    const lines: LogLine[] = [];
    for (const claim of this.outstanding) {
      claim.givenUp = true;
      claim.stopWaiting();
      // Outstanding claims are inserting, waiting for the response or the commit, or claiming.
      lines.push(this.observer.leftToWorkers(claim.task, claim.queue, claim.state as LeftState));
    }
    this.outstanding.clear();
    this.waiting.clear();
    this.proving.clear();
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

  /**
   * The response has ended: a job whose commit is proven starts; one whose proof is to come waits
   * for it, at most `commitWaitMs`; any other is claimed.
   */
  private proceed(claim: Claim): void {
    if (claim.committed) this.startProven(claim);
    else if (!this.proving.has(claim.jobId)) this.claim(claim);
    else if (this.commitWaitMs === 0) this.commitWaitEnded(claim);
    else {
      claim.state = 'waiting for the commit';
      claim.commitWait = setTimeout(() => this.commitWaitEnded(claim), this.commitWaitMs);
    }
  }

  /** It waited `commitWaitMs` for the proof of its commit in vain. */
  private commitWaitEnded(claim: Claim): void {
    claim.stopWaiting();
    this.proving.delete(claim.jobId);
    this.claim(claim);
  }

  /** The queue proved a job's commit. Only a job still waiting for it is moved: no second run. */
  private committed(id: string): void {
    const claim = this.proving.get(id);
    if (claim === undefined || claim.committed) return;
    claim.committed = true;
    if (claim.state === 'waiting for the commit') {
      claim.stopWaiting();
      this.startProven(claim);
    }
  }

  /**
   * Proofs may have been lost, or stop coming: every job that waits for one, or has one and waits
   * for its response (the queue may be closing), is claimed instead.
   */
  private unsure(): void {
    const claims = [...this.proving.values()];
    this.proving.clear();
    for (const claim of claims) {
      claim.committed = false;
      if (claim.state === 'waiting for the commit') {
        claim.stopWaiting();
        this.claim(claim);
      }
    }
  }

  /**
   * Runs a job whose commit is proven, with no claim, under the lease its insert set, if what is
   * left of it covers every attempt here and the reserve (the lease less half the margin): a long
   * transaction spent some of it. Otherwise it is claimed, which renews the lease.
   */
  private startProven(claim: Claim): void {
    this.proving.delete(claim.jobId);
    const deadline = claim.leaseFrom + claim.leaseMs;
    if (performance.now() + claim.leaseMs - this.reserveMs > deadline) {
      this.claim(claim);
      return;
    }
    this.outstanding.delete(claim);
    claim.state = 'claimed';
    claim.deadline = deadline;
    this.ends.runHere(claim.queue, claim.task);
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
  state:
    | 'inserting'
    | 'waiting for the response'
    | 'waiting for the commit'
    | 'claiming'
    | 'claimed'
    | 'ended' = 'inserting';
  jobId = '';
  /** `performance.now()` when the lease ends, once claimed (or started on the proof of its commit). */
  deadline = 0;
  /** drain() gave it up before it was claimed: counted, and not to be run here. */
  givenUp = false;
  /** `performance.now()` at or before which its insert's lease began, when its commit is to be proven. */
  leaseFrom = 0;
  /** The queue proved its commit. */
  committed = false;
  /** While it waits for that proof after the response. */
  commitWait: NodeJS.Timeout | undefined = undefined;

  constructor(
    private readonly claims: Claims,
    readonly queue: RequestQueue,
    readonly task: Task,
    readonly leaseMs: number,
  ) {}

  /** No longer waits for the proof of its commit. */
  stopWaiting(): void {
    clearTimeout(this.commitWait);
    this.commitWait = undefined;
  }

  covers(timeoutMs: number): boolean {
    return performance.now() + timeoutMs + this.claims.reserveMs <= this.deadline;
  }

  ended(outcome: LeaseOutcome, error?: Error): void {
    this.claims.writeBack(this, outcome, error);
  }
}
