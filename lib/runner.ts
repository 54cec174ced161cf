/**
 * The runner behind one `backgroundTasks()` middleware. It starts a request's queue when the
 * response ends, runs that request's tasks one after another (a turn of the event loop between
 * two) and at most `concurrency` tasks at once overall, enforces timeouts and retries, and
 * answers `idle()` and `drain()`. Every outcome goes to its observer, which counts, logs and
 * traces it.
 */
import { AsyncResource } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import onFinished from 'on-finished';
import type { Logger } from 'winston';
import { AttemptContext, TaskAbandonedError, timeoutError } from './attempt';
import { Claims } from './claims';
import { isTransactional, type TransactionClient } from './durable';
import { Fifo } from './fifo';
import { inTime } from './in-time';
import { HandOffs } from './hand-offs';
import { LiveQueues } from './live-queues';
import { droppedRecords, useLogger } from './logging';
import { TaskObserver, type LogLine } from './observer';
import {
  MAX_TIMER_MS,
  checkInteger,
  checkOptionsObject,
  type ResolvedOptions,
  type ResolvedPolicy,
} from './options';
import { RunningAttempt, type RequestQueue } from './request-queue';
import type { Task } from './task';
import { activeContext, runInSpan } from './telemetry';
import { Timeouts } from './timeouts';
import { isThenable, settle } from './thrown';
import type { BackgroundTasksStats, DrainResult, TaskCounts } from './types';

/** How long past its `timeoutMs` a drain() may take to write the lines of the tasks it gave up on. */
export const DRAIN_LINES_GRACE_MS = 5_000;

export interface DrainOptions {
  /** How long to wait for running and pending tasks before abandoning them. Default: `10000`. */
  timeoutMs?: number;
}

export class TaskRunner {
  readonly logger: Logger;
  /** The middleware's task policy: the defaults of every task it runs. */
  readonly policy: ResolvedPolicy;
  /** The payload limit of defined tasks that set none. */
  readonly maxPayloadBytes: number;
  private readonly observer: TaskObserver;
  /** The observer's counters, read here to schedule. */
  private readonly counts: TaskCounts;
  /** Queues with a task ready to start and no free slot, in the order they became ready. */
  private readonly waiting = new Fifo<RequestQueue>();
  /** Queues holding a task that has not ended: what `drain()` names when it gives up. */
  private readonly live = new LiveQueues();
  /** Defined tasks on their way to the durable queue, when there is one. */
  private readonly handOffs: HandOffs | undefined;
  /** Tasks added with `addInTransaction()`, when the durable queue is transactional. */
  private readonly claims: Claims | undefined;
  /** The deadlines of running async attempts. */
  private readonly timeouts = new Timeouts<RunningAttempt>((attempt) => this.timeOut(attempt));
  private idleWaiters: Array<() => void> = [];
  private pumping = false;
  /** The drain that runs, if one does. */
  private draining: Promise<DrainResult> | undefined = undefined;
  /** drain() is writing the lines of the tasks it gave up on. */
  private writingLines = false;

  constructor(private readonly options: ResolvedOptions) {
    this.logger = useLogger('backgroundTasks', options.logger);
    this.observer = new TaskObserver(this.logger, options.onTaskError, false);
    this.counts = this.observer.counts;
    this.policy = {
      timeoutMs: options.timeoutMs,
      retries: options.retries,
      retryDelayMs: options.retryDelayMs,
    };
    this.maxPayloadBytes = options.maxPayloadBytes;
    this.handOffs =
      options.durable === undefined
        ? undefined
        : new HandOffs(options.durable, this.observer, {
            enqueued: (queue) => this.retireIfDone(queue),
            runHere: (queue, task) => {
              queue.push(task);
              this.track(queue);
              queue.scope!.runInAsyncScope(this.start, this, queue);
            },
          });
    this.claims = isTransactional(options.durable)
      ? new Claims(options.durable, this.observer, options.durable.leaseMarginMs, {
          runHere: (queue, task) => {
            // Committed with the caller's data: it runs whatever runOnAbort says.
            queue.push(task);
            this.track(queue);
            queue.scope!.runInAsyncScope(this.resume, this, queue);
          },
          left: (queue) => this.retireIfDone(queue),
          settled: () => this.settleIdle(),
        })
      : undefined;
  }

  /** The durable queue, for `addInTransaction()`'s checks. */
  get durable(): ResolvedOptions['durable'] {
    return this.options.durable;
  }

  stats(): BackgroundTasksStats {
    return { ...this.counts, logRecordsDropped: droppedRecords(this.logger) };
  }

  /** Resolves once no task of this runner is pending or running. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Waits for every pending and running task, at most `timeoutMs`; then aborts what still runs
   * and logs each task it gives up on, at the logger's pace but for at most
   * `DRAIN_LINES_GRACE_MS` more. Tasks added meanwhile are waited for too. A call while a drain
   * runs gets that drain's promise: there is one true result.
   */
  drain(options?: DrainOptions): Promise<DrainResult> {
    if (this.draining !== undefined) return this.draining;
    let limit: number;
    try {
      const { timeoutMs } = checkOptionsObject('drain', options, ['timeoutMs']);
      limit = checkInteger('drain', 'timeoutMs', timeoutMs, 10_000, 0, MAX_TIMER_MS);
    } catch (error) {
      return Promise.reject(error);
    }
    const draining = this.drainWithin(limit).finally(() => {
      this.draining = undefined;
      this.writingLines = false;
      this.settleIdle();
    });
    this.draining = draining;
    return draining;
  }

  private async drainWithin(limit: number): Promise<DrainResult> {
    const linesDeadline = performance.now() + limit + DRAIN_LINES_GRACE_MS;
    const completed = await inTime(this.idle(), limit);
    // Rejections still tallied are written now, before the app exits.
    this.observer.writeAllRejections();
    if (completed) return { completed: true, abandoned: 0 };
    // idle() waits for the lines too: a test that awaits it then reads them all.
    this.writingLines = true;
    const lines = this.abandonAll();
    // Thousands of lines at once would outrun a File transport and spill to stderr: they are
    // written at the pace the logger takes them, before drain() resolves.
    await this.observer.writeLines(lines, linesDeadline);
    return { completed: false, abandoned: lines.length };
  }

  /** Takes a task into `queue`, or rejects it (logged) when `maxPending` tasks are pending. */
  submit(queue: RequestQueue, task: Task): void {
    if (this.counts.pending >= this.options.maxPending) {
      this.observer.rejected(task, queue, this.options.maxPending);
      return;
    }
    task.parentContext = activeContext();
    this.observer.added();
    if (task.definition !== undefined && this.handOffs !== undefined) queue.pushDurable(task);
    else queue.push(task);
    this.track(queue);
    if (queue.ended) {
      // A late add may come from any async context: the tasks still run in the request's.
      queue.scope!.runInAsyncScope(this.start, this, queue);
    } else this.watch(queue);
  }

  /**
   * Inserts a transactional task's job through `db` (see claims.ts); it is claimed and run here
   * once the response has ended. Past `maxPending`, the job is left to the workers at once.
   */
  insertInTransaction(queue: RequestQueue, task: Task, db: TransactionClient): Promise<void> {
    const full = this.counts.pending >= this.options.maxPending;
    task.parentContext = activeContext();
    this.observer.added();
    this.track(queue);
    if (!queue.ended) this.watch(queue);
    return this.claims!.insert(queue, task, db, full);
  }

  private watch(queue: RequestQueue): void {
    if (queue.watching) return;
    queue.watching = true;
    onFinished(queue.res!, () => this.responseEnded(queue));
  }

  /** Takes back tasks that `clear()` removed before they started. */
  withdraw(queue: RequestQueue, count: number): void {
    this.observer.withdrawn(count);
    this.retireIfDone(queue);
  }

  /**
   * Counts the queue among the live ones. Its async scope is taken once, at its first task, in the
   * request's context: every later start (from the line, a retry, a late add) runs in it.
   */
  private track(queue: RequestQueue): void {
    if (queue.isLive) return;
    queue.scope ??= new AsyncResource('express-background-tasks');
    this.live.add(queue);
  }

  private responseEnded(queue: RequestQueue): void {
    queue.ended = true;
    // The route is done adding: what it had rejected is one line now.
    this.observer.writeRejections(queue);
    this.start(queue);
  }

  /**
   * Sets an ended response's tasks going: durable ones to their queue, the rest to a slot or the
   * line. Whatever outlives this call no longer needs the request's objects.
   */
  private start(queue: RequestQueue): void {
    this.claims?.responseEnded(queue);
    if (!this.options.runOnAbort && queue.describeRequest().aborted) {
      for (const task of queue.takeAll()) this.observer.rejected(task, queue, undefined);
      this.retireIfDone(queue);
    } else {
      const durable = queue.takeDurable();
      if (durable !== undefined) for (const task of durable) this.handOffs!.send(queue, task);
      this.resume(queue);
      return;
    }
    if (queue.isLive) queue.release();
  }

  /** Sets the queue going if it is idle with a task ready. */
  private resume(queue: RequestQueue): void {
    if (!queue.active && queue.hasNext()) {
      queue.active = true;
      this.advance(queue);
    }
    if (queue.isLive) queue.release();
  }

  /** Starts the queue's next task if a slot is free and nobody waits, else lines it up. */
  private advance(queue: RequestQueue): void {
    const mustWait = this.counts.running >= this.options.concurrency || this.waiting.length > 0;
    if (mustWait && queue.hasNext()) this.waiting.push(queue);
    else this.drive(queue);
    this.pump();
  }

  /** Runs the queue's next task, or lets the queue go when it has nothing left. */
  private drive(queue: RequestQueue): void {
    if (!queue.hasNext()) {
      queue.active = false;
      this.retireIfDone(queue);
      return;
    }
    if (this.runAttempt(queue, queue.takeNext()!)) this.goOn(queue);
  }

  /**
   * A task of the queue has ended: its next one starts after a turn of the event loop (a
   * macrotask, so that I/O runs first: a task that re-adds itself, sync or async without real
   * I/O, must not starve the server). A queue with nothing left is let go at once, with no turn.
   */
  private goOn(queue: RequestQueue): void {
    if (!queue.hasNext()) {
      queue.active = false;
      this.retireIfDone(queue);
      return;
    }
    queue.turn = setImmediate(onTurn, this, queue);
  }

  /** @internal Called by the turn that `goOn()` waited for. */
  turnDue(queue: RequestQueue): void {
    queue.turn = undefined;
    queue.scope!.runInAsyncScope(this.advance, this, queue);
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
   * Makes one attempt, inside its span when one is recorded. Returns true when the task ended
   * synchronously for good, false when the queue is suspended: the attempt is async, or a retry
   * is waiting.
   */
  private runAttempt(queue: RequestQueue, task: Task): boolean {
    if (task.lease !== undefined && !task.lease.covers(task.policy.timeoutMs)) {
      // It waited too long for a slot or a retry: a worker may take the job before this attempt ends.
      this.observer.write(this.observer.leftToWorkers(task, queue, 'lease ran out'), 'warn');
      return true;
    }
    task.attempt++;
    this.observer.attemptStarted(task, queue);
    const ctx =
      task.object === undefined
        ? undefined
        : new AttemptContext(task.attempt, queue.describeRequest());
    let result: unknown;
    let async: boolean;
    try {
      result =
        task.span === undefined
          ? task.invoke(ctx)
          : runInSpan(task.span, task.parentContext, task.invoke, task, ctx);
      async = isThenable(result); // a `then` getter that throws is the task's failure
    } catch (thrown) {
      return this.fail(queue, task, thrown, false);
    }
    // Outside the try: whatever happens in reporting, a task that succeeded never also fails.
    if (!async) {
      this.observer.attemptSucceeded(task);
      return true;
    }
    const attempt = new RunningAttempt(queue, task, ctx);
    queue.attempt = attempt;
    if (task.policy.timeoutMs > 0)
      this.timeouts.add(attempt, task.policy.timeoutMs, task.startedAt);
    settle(result).then(
      () => this.attemptSettled(attempt, undefined, false),
      (thrown: unknown) => this.attemptSettled(attempt, thrown, true),
    );
    return false;
  }

  private attemptSettled(attempt: RunningAttempt, thrown: unknown, failed: boolean): void {
    if (attempt.ended) return; // timed out or abandoned: its outcome was already counted
    const { queue, task } = attempt;
    this.end(attempt);
    let ended = true;
    if (failed) ended = this.fail(queue, task, thrown, false);
    else this.observer.attemptSucceeded(task);
    this.afterAttempt(queue, ended);
  }

  /** An async attempt is over (settled, timed out or abandoned): later outcomes are ignored. */
  private end(attempt: RunningAttempt): void {
    attempt.ended = true;
    this.timeouts.delete(attempt);
    attempt.queue.attempt = undefined;
  }

  /** After an async attempt: the queue goes on (after a turn), and its slot goes to the line. */
  private afterAttempt(queue: RequestQueue, ended: boolean): void {
    if (ended) this.goOn(queue);
    this.pump();
  }

  /** Called by `timeouts` when an attempt's time is up. */
  private timeOut(attempt: RunningAttempt): void {
    if (attempt.ended) return;
    const { queue, task } = attempt;
    this.end(attempt);
    const error = timeoutError(task.policy.timeoutMs);
    attempt.ctx?.abort(error);
    // The shared timer fired in whichever request's context armed it: go on in this one's.
    queue.scope!.runInAsyncScope(this.afterTimeout, this, queue, task, error);
  }

  private afterTimeout(queue: RequestQueue, task: Task, error: Error): void {
    this.afterAttempt(queue, this.fail(queue, task, error, true));
  }

  /** A failed attempt: schedules a retry (false) or lets the task end failed (true). */
  private fail(queue: RequestQueue, task: Task, thrown: unknown, timedOut: boolean): boolean {
    const retry = task.attempt <= task.policy.retries;
    const delay = retry ? retryDelay(task.policy.retryDelayMs, task.attempt) : undefined;
    this.observer.attemptFailed(task, queue, thrown, timedOut, delay);
    if (delay === undefined) return true;
    queue.retrying = task;
    queue.retryTimer = setTimeout(onRetryDue, delay, this, queue);
    return false;
  }

  /** @internal Called by a retry's timer. */
  retryDue(queue: RequestQueue): void {
    queue.retryTimer = undefined;
    queue.scope!.runInAsyncScope(this.advance, this, queue);
  }

  /**
   * Gives up on every task that has not ended, at once: aborts the running ones, and counts each.
   * Returns their log lines, which name each task, for drain() to write.
   */
  private abandonAll(): LogLine[] {
    this.waiting.clear();
    const lines = this.handOffs?.abandonAll() ?? [];
    if (this.claims !== undefined) lines.push(...this.claims.abandonAll());
    for (const queue of this.live.takeAll()) {
      const { attempt } = queue;
      if (attempt !== undefined) {
        this.end(attempt);
        const reason = new TaskAbandonedError('task abandoned by drain()');
        attempt.ctx?.abort(reason);
        lines.push(this.observer.abandoned(attempt.task, queue, 'running', reason));
      }
      if (queue.retryTimer !== undefined) {
        clearTimeout(queue.retryTimer);
        queue.retryTimer = undefined;
      }
      if (queue.turn !== undefined) {
        clearImmediate(queue.turn);
        queue.turn = undefined;
      }
      for (const task of queue.takeAll()) {
        const state = task.attempt > 0 ? 'waiting to retry' : 'pending';
        lines.push(this.observer.abandoned(task, queue, state));
      }
      queue.active = false;
    }
    this.settleIdle();
    return lines;
  }

  /** Forgets a queue that holds nothing more to run, and wakes `idle()` waiters when all is done. */
  private retireIfDone(queue: RequestQueue): void {
    if (queue.isLive && !queue.active && !queue.hasNext()) this.live.delete(queue);
    this.settleIdle();
  }

  private isIdle(): boolean {
    return (
      this.counts.pending === 0 &&
      this.counts.running === 0 &&
      !this.writingLines &&
      (this.claims?.settling ?? 0) === 0
    );
  }

  private settleIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** Exponential backoff with jitter: between half and all of `base * 2 ** (attempt - 1)`. */
function retryDelay(base: number, attempt: number): number {
  const ceiling = Math.min(MAX_TIMER_MS, base * 2 ** (attempt - 1));
  return Math.round(ceiling * (0.5 + Math.random() / 2));
}

function onRetryDue(runner: TaskRunner, queue: RequestQueue): void {
  runner.retryDue(queue);
}

function onTurn(runner: TaskRunner, queue: RequestQueue): void {
  runner.turnDue(queue);
}
