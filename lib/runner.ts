/**
 * The runner behind one `backgroundTasks()` middleware. It starts a request's queue when the
 * response ends, runs that request's tasks one after another and at most `concurrency` tasks
 * at once overall, enforces timeouts and retries, isolates and logs every failure, and keeps
 * the counters that `idle()`, `stats()` and `drain()` answer from.
 */
import { AsyncResource } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import onFinished from 'on-finished';
import type { Logger } from 'winston';
import { Fifo } from './fifo';
import { LiveQueues } from './live-queues';
import { Timeouts, type Timed } from './timeouts';
import { AttemptContext, TaskAbandonedError, timeoutError } from './attempt';
import {
  LOG_MESSAGES,
  useLogger,
  failureFields,
  isThenable,
  reportTaskFailed,
  requestFields,
  safeLog,
} from './logging';
import {
  MAX_TIMER_MS,
  checkInteger,
  checkOptionsObject,
  type ResolvedOptions,
  type ResolvedPolicy,
} from './options';
import type { BackgroundTasks } from './queue';
import type { Task } from './task';
import { errorFields, settle, toError } from './thrown';
import type { BackgroundTasksStats, DrainResult } from './types';

export interface DrainOptions {
  /** How long to wait for running and pending tasks before abandoning them. Default: `10000`. */
  timeoutMs?: number;
}

export class TaskRunner {
  readonly logger: Logger;
  /** The middleware's task policy: the defaults of every task it runs. */
  readonly policy: ResolvedPolicy;
  private readonly counts: BackgroundTasksStats = {
    pending: 0,
    running: 0,
    succeeded: 0,
    failed: 0,
    timedOut: 0,
    rejected: 0,
    abandoned: 0,
    enqueued: 0,
  };
  /** Queues with a task ready to start and no free slot, in the order they became ready. */
  private readonly waiting = new Fifo<BackgroundTasks>();
  /** Queues holding a task that has not ended: what `drain()` names when it gives up. */
  private readonly live = new LiveQueues();
  /** Defined tasks being handed to the durable queue: pending until it answers. */
  private readonly handOffs = new Set<HandOff>();
  /** The deadlines of running async attempts. */
  private readonly timeouts = new Timeouts<Attempt>((attempt) => this.timeOut(attempt));
  private idleWaiters: Array<() => void> = [];
  private pumping = false;

  constructor(private readonly options: ResolvedOptions) {
    this.logger = useLogger('backgroundTasks', options.logger);
    this.policy = {
      timeoutMs: options.timeoutMs,
      retries: options.retries,
      retryDelayMs: options.retryDelayMs,
    };
  }

  stats(): BackgroundTasksStats {
    return { ...this.counts };
  }

  /** Resolves once no task of this runner is pending or running. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Waits for every pending and running task, at most `timeoutMs`; then aborts what still runs
   * and logs each task it gives up on. Tasks added meanwhile are waited for too.
   */
  async drain(options?: DrainOptions): Promise<DrainResult> {
    const { timeoutMs } = checkOptionsObject('drain', options, ['timeoutMs']);
    const limit = checkInteger('drain', 'timeoutMs', timeoutMs, 10_000, 0, MAX_TIMER_MS);
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([
      this.idle().then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(resolve, limit, false))),
    ]);
    clearTimeout(timer);
    return inTime
      ? { completed: true, abandoned: 0 }
      : { completed: false, abandoned: this.abandonAll() };
  }

  /** Takes a task into `queue`, or rejects it (logged) when `maxPending` tasks are pending. */
  submit(queue: BackgroundTasks, task: Task): void {
    if (this.counts.pending >= this.options.maxPending) {
      this.reject(queue, task, 'queue full');
      return;
    }
    this.counts.pending++;
    if (task.definition !== undefined && this.options.durable !== undefined)
      queue.pushDurable(task);
    else queue.push(task);
    this.track(queue);
    if (queue.ended) {
      // A late add may come from any async context: the tasks still run in the request's.
      queue.scope!.runInAsyncScope(this.start, this, queue);
    } else if (!queue.watching) {
      queue.watching = true;
      onFinished(queue.res!, () => this.responseEnded(queue));
    }
  }

  /** Takes back tasks that `clear()` removed before they started. */
  withdraw(queue: BackgroundTasks, count: number): void {
    this.counts.pending -= count;
    this.retireIfDone(queue);
  }

  /**
   * Counts the queue among the live ones. Its async scope is taken once, at its first task, in the
   * request's context: every later start (from the line, a retry, a late add) runs in it.
   */
  private track(queue: BackgroundTasks): void {
    if (queue.isLive) return;
    queue.scope ??= new AsyncResource('express-background-tasks');
    this.live.add(queue);
  }

  private responseEnded(queue: BackgroundTasks): void {
    queue.ended = true;
    this.start(queue);
  }

  /**
   * Sets an ended response's tasks going: durable ones to their queue, the rest to a slot or the
   * line. Whatever outlives this call no longer needs the request's objects.
   */
  private start(queue: BackgroundTasks): void {
    if (!this.options.runOnAbort && queue.describeRequest().aborted) {
      this.rejectQueued(queue, 'client aborted');
    } else {
      const durable = queue.takeDurable();
      if (durable !== undefined) for (const task of durable) this.handOff(queue, task);
      if (!queue.active && queue.hasNext()) {
        queue.active = true;
        this.advance(queue);
      }
    }
    if (queue.isLive) queue.release();
  }

  /** Gives a defined task to the durable queue; if that fails, logs it and runs the task here. */
  private handOff(queue: BackgroundTasks, task: Task): void {
    const request = queue.describeRequest();
    const job = { name: task.name, payload: task.args[0], request, ...task.policy };
    const handOff: HandOff = { queue, task, abandoned: false };
    this.handOffs.add(handOff);
    const enqueued = () => {
      this.handOffs.delete(handOff);
      if (handOff.abandoned) return; // drain() gave up on it and counted it
      this.counts.pending--;
      this.counts.enqueued++;
      this.retireIfDone(queue);
    };
    const runHere = (thrown: unknown) => {
      this.handOffs.delete(handOff);
      safeLog(this.logger, 'error', LOG_MESSAGES.enqueueFailed, {
        ...requestFields(task.name, request),
        error: errorFields(toError(thrown)),
        ...(handOff.abandoned && { abandoned: true }),
      });
      if (handOff.abandoned) return;
      queue.push(task);
      this.track(queue);
      queue.scope!.runInAsyncScope(this.start, this, queue);
    };
    let enqueuing: unknown;
    try {
      enqueuing = this.options.durable!.enqueue(job);
    } catch (thrown) {
      enqueuing = Promise.reject(thrown);
    }
    settle(enqueuing).then(enqueued, runHere);
  }

  /** Starts the queue's next task if a slot is free and nobody waits, else lines it up. */
  private advance(queue: BackgroundTasks): void {
    const mustWait = this.counts.running >= this.options.concurrency || this.waiting.length > 0;
    if (mustWait && queue.hasNext()) this.waiting.push(queue);
    else this.drive(queue);
    this.pump();
  }

  /**
   * Runs the queue's tasks while they end synchronously and a slot stays free for it; lines the
   * queue up when it must wait, and lets it go when it has nothing left.
   */
  private drive(queue: BackgroundTasks): void {
    for (let first = true; ; first = false) {
      if (!queue.hasNext()) {
        queue.active = false;
        this.retireIfDone(queue);
        return;
      }
      if (!first && (this.counts.running >= this.options.concurrency || this.waiting.length > 0)) {
        this.waiting.push(queue);
        return;
      }
      const task = queue.takeNext()!;
      this.counts.pending--;
      this.counts.running++;
      if (!this.runAttempt(queue, task)) return;
    }
  }

  /**
   * Starts waiting queues, each in its request's async context, while slots are free. Re-entrant
   * calls return at once, so sync tasks of different requests never nest on the stack.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.counts.running < this.options.concurrency && this.waiting.length > 0) {
        const queue = this.waiting.shift()!;
        queue.scope!.runInAsyncScope(this.drive, this, queue);
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Makes one attempt. Returns true when the task ended synchronously for good, false when the
   * queue is suspended: the attempt is async, or a retry is waiting.
   */
  private runAttempt(queue: BackgroundTasks, task: Task): boolean {
    task.attempt++;
    const startedAt = performance.now();
    const ctx =
      task.object === undefined
        ? undefined
        : new AttemptContext(task.attempt, queue.describeRequest());
    let result: unknown;
    try {
      result = task.invoke(ctx);
      if (!isThenable(result)) {
        this.succeed();
        return true;
      }
    } catch (thrown) {
      return this.fail(queue, task, startedAt, thrown, false);
    }
    const attempt = new Attempt(queue, task, ctx, startedAt);
    queue.attempt = attempt;
    if (task.policy.timeoutMs > 0) this.timeouts.add(attempt, task.policy.timeoutMs, startedAt);
    settle(result).then(
      () => this.attemptSettled(attempt, undefined, false),
      (thrown: unknown) => this.attemptSettled(attempt, thrown, true),
    );
    return false;
  }

  private attemptSettled(attempt: Attempt, thrown: unknown, failed: boolean): void {
    if (attempt.ended) return; // timed out or abandoned: its outcome was already counted
    const { queue } = attempt;
    this.end(attempt);
    const ended = failed
      ? this.fail(queue, attempt.task, attempt.startedAt, thrown, false)
      : this.succeed();
    this.afterAttempt(queue, ended);
  }

  /** An async attempt is over (settled, timed out or abandoned): later outcomes are ignored. */
  private end(attempt: Attempt): void {
    attempt.ended = true;
    this.timeouts.delete(attempt);
    attempt.queue.attempt = undefined;
  }

  /** After an async attempt: the queue goes on, or (a retry is waiting) its slot goes to the line. */
  private afterAttempt(queue: BackgroundTasks, ended: boolean): void {
    if (ended) this.advance(queue);
    else this.pump();
  }

  /** Called by `timeouts` when an attempt's time is up. */
  private timeOut(attempt: Attempt): void {
    if (attempt.ended) return;
    const { queue } = attempt;
    this.end(attempt);
    const error = timeoutError(attempt.task.policy.timeoutMs);
    attempt.ctx?.abort(error);
    this.afterAttempt(queue, this.fail(queue, attempt.task, attempt.startedAt, error, true));
  }

  private succeed(): true {
    this.counts.running--;
    this.counts.succeeded++;
    return true;
  }

  /** Logs a failed attempt; schedules a retry (false) or counts the task as ended (true). */
  private fail(
    queue: BackgroundTasks,
    task: Task,
    startedAt: number,
    thrown: unknown,
    timedOut: boolean,
  ): boolean {
    this.counts.running--;
    const error = toError(thrown);
    const request = queue.describeRequest();
    const fields = failureFields(task.name, request, task.attempt, startedAt, timedOut, error);
    if (task.attempt <= task.policy.retries) {
      const delay = retryDelay(task.policy.retryDelayMs, task.attempt);
      safeLog(this.logger, 'warn', LOG_MESSAGES.taskRetrying, { ...fields, retryInMs: delay });
      this.counts.pending++;
      queue.retrying = task;
      queue.retryTimer = setTimeout(onRetryDue, delay, this, queue);
      return false;
    }
    if (timedOut) this.counts.timedOut++;
    else this.counts.failed++;
    reportTaskFailed(this.logger, fields, error, request, this.options.onTaskError);
    return true;
  }

  /** @internal Called by a retry's timer. */
  retryDue(queue: BackgroundTasks): void {
    queue.retryTimer = undefined;
    queue.scope!.runInAsyncScope(this.advance, this, queue);
  }

  private reject(
    queue: BackgroundTasks,
    task: Task,
    reason: 'queue full' | 'client aborted',
  ): void {
    this.counts.rejected++;
    const full = reason === 'queue full';
    safeLog(this.logger, full ? 'error' : 'warn', LOG_MESSAGES.taskRejected, {
      ...requestFields(task.name, queue.describeRequest()),
      reason,
      ...(full && { maxPending: this.options.maxPending }),
    });
  }

  private rejectQueued(queue: BackgroundTasks, reason: 'client aborted'): void {
    for (const task of queue.takeAll()) {
      this.counts.pending--;
      this.reject(queue, task, reason);
    }
    this.retireIfDone(queue);
  }

  /** Gives up on every task that has not ended: aborts the running ones, logs each by name. */
  private abandonAll(): number {
    let abandoned = 0;
    const give = (queue: BackgroundTasks, task: Task, state: string) => {
      abandoned++;
      this.counts.abandoned++;
      safeLog(this.logger, 'error', LOG_MESSAGES.taskAbandoned, {
        ...requestFields(task.name, queue.describeRequest()),
        state,
        attempt: task.attempt,
      });
    };
    this.waiting.clear();
    for (const handOff of this.handOffs) {
      handOff.abandoned = true;
      this.counts.pending--;
      give(handOff.queue, handOff.task, 'enqueueing');
    }
    this.handOffs.clear();
    for (const queue of this.live.takeAll()) {
      const { attempt } = queue;
      if (attempt !== undefined) {
        this.end(attempt);
        attempt.ctx?.abort(new TaskAbandonedError('task abandoned by drain()'));
        this.counts.running--;
        give(queue, attempt.task, 'running');
      }
      if (queue.retryTimer !== undefined) {
        clearTimeout(queue.retryTimer);
        queue.retryTimer = undefined;
      }
      for (const task of queue.takeAll()) {
        this.counts.pending--;
        give(queue, task, task.attempt > 0 ? 'waiting to retry' : 'pending');
      }
      queue.active = false;
    }
    this.settleIdle();
    return abandoned;
  }

  /** Forgets a queue that holds nothing more to run, and wakes `idle()` waiters when all is done. */
  private retireIfDone(queue: BackgroundTasks): void {
    if (queue.isLive && !queue.active && !queue.hasNext()) this.live.delete(queue);
    this.settleIdle();
  }

  private isIdle(): boolean {
    return this.counts.pending === 0 && this.counts.running === 0;
  }

  private settleIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** A defined task on its way to the durable queue. */
interface HandOff {
  readonly queue: BackgroundTasks;
  readonly task: Task;
  /** drain() gave up on it: whatever the durable queue answers, it is not counted or run again. */
  abandoned: boolean;
}

/** An attempt that returned a promise: what its timeout, its settlement and `drain()` share. */
export class Attempt implements Timed {
  ended = false;
  deadline = 0;
  timeoutList: Timed['timeoutList'] = undefined;
  previousTimed: Timed | undefined = undefined;
  nextTimed: Timed | undefined = undefined;

  constructor(
    readonly queue: BackgroundTasks,
    readonly task: Task,
    readonly ctx: AttemptContext | undefined,
    readonly startedAt: number,
  ) {}
}

/** Exponential backoff with jitter: between half and all of `base * 2 ** (attempt - 1)`. */
function retryDelay(base: number, attempt: number): number {
  const ceiling = Math.min(MAX_TIMER_MS, base * 2 ** (attempt - 1));
  return Math.round(ceiling * (0.5 + Math.random() / 2));
}

function onRetryDue(runner: TaskRunner, queue: BackgroundTasks): void {
  runner.retryDue(queue);
}
