/**
 * The one seam for outcomes: the in-process runner and the BullMQ worker report here each
 * attempt's start and end and each task's end, and this is where they are counted (`stats()`),
 * logged (winston), traced and measured (OpenTelemetry, through telemetry.ts). One place, so
 * that the counters, the log lines, the spans and the metrics cannot disagree.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'winston';
import { TaskAbandonedError } from './attempt';
import { LOG_MESSAGES, roomIn, safeLog, spillRecord, type LogLevel } from './logging';
import {
  countInGauges,
  endSpan,
  meters,
  recordAttempt,
  recordTaskEnd,
  inSpan,
  startAttemptSpan,
  startEnqueueSpan,
  traceCarrier,
  type AttemptOutcome,
  type Instruments,
  type TaskOutcome,
  type TraceCarrier,
} from './telemetry';
import { RejectionTallies } from './rejection-tallies';
import { errorFields, isThenable, settle, toError } from './thrown';
import { SPAN_KIND, type TraceContext, type TraceSpan } from './otel-api';
import type { Attempting, LeaseOutcome, RequestSource } from './attempting';
import type { TaskCounts, TaskFailure, TaskRequest } from './types';

/** What a task was doing when `drain()` gave up on it. */
export type AbandonedState = 'running' | 'pending' | 'waiting to retry' | 'enqueueing';

/**
 * Why a task added with `addInTransaction()` was left to the workers: the state drain() found it
 * in, or what happened after the response.
 */
export type LeftState =
  | AbandonedState
  | 'inserting'
  | 'waiting for the response'
  | 'waiting for the commit'
  | 'claiming'
  | 'not claimed'
  | 'claim failed'
  | 'lease ran out'
  | 'queue full';

/** A line to write at `error` later, inside the span (or the context) of the task it is about. */
export interface LogLine {
  readonly message: string;
  readonly fields: object;
  readonly span: TraceSpan | undefined;
  readonly parent: TraceContext | undefined;
}

export class TaskObserver {
  /** What `stats()` answers: every task added is in exactly one of these at any moment. */
  readonly counts: TaskCounts = {
    pending: 0,
    running: 0,
    succeeded: 0,
    failed: 0,
    timedOut: 0,
    rejected: 0,
    abandoned: 0,
    enqueued: 0,
    leftToWorkers: 0,
  };

  /** Rejections for a full queue, per request, until their line is written. */
  private readonly rejections = new RejectionTallies((source, tally) => {
    safeLog(this.logger, 'error', LOG_MESSAGES.tasksRejected, {
      count: tally.count,
      tasks: tally.tasks,
      ...placeFields(source.describeRequest()),
      reason: 'queue full',
      maxPending: tally.maxPending,
    });
  });

  /**
   * `durable` is true on a BullMQ worker: its spans are `CONSUMER` spans and its metrics say
   * `background_task.durable: true`. A web process's counts join the process-wide gauges.
   */
  constructor(
    readonly logger: Logger,
    private readonly onTaskError: ((failure: TaskFailure) => unknown) | undefined,
    private readonly durable: boolean,
  ) {
    if (!durable) countInGauges(this.counts);
  }

  /** A task was taken in: it is pending. */
  added(): void {
    this.counts.pending++;
  }

  /** `clear()` took back tasks that had not started: they count as never added. */
  withdrawn(count: number): void {
    this.counts.pending -= count;
  }

  /**
   * An attempt of `task` starts now (the caller has set `task.attempt`). A worker's jobs wait in
   * Redis, not here: on a worker nothing is counted as pending, before an attempt or for a retry.
   */
  attemptStarted(task: Attempting, source: RequestSource): void {
    if (!this.durable) this.counts.pending--;
    this.counts.running++;
    task.startedAt = performance.now();
    task.span = startAttemptSpan(
      task,
      source.requestId,
      this.durable ? SPAN_KIND.CONSUMER : SPAN_KIND.INTERNAL,
    );
  }

  /** The attempt succeeded, and so the task. */
  attemptSucceeded(task: Attempting): void {
    this.counts.running--;
    this.counts.succeeded++;
    // A success is timed only when a meter records it: performance.now() is not free.
    const instruments = meters();
    this.attemptOver(task, 'succeeded', undefined, instruments && this.elapsed(task), instruments);
    task.lease?.ended('succeeded');
  }

  /**
   * The attempt failed (threw, rejected or timed out). With `retryInMs` a retry is scheduled and
   * the task is pending again (logged at `warn`); without, the task has failed for good (logged
   * at `error`, then `onTaskError` is called). Both happen inside the attempt's span, so that
   * the line carries its trace and span ids (`@opentelemetry/instrumentation-winston`).
   */
  attemptFailed(
    task: Attempting,
    source: RequestSource,
    thrown: unknown,
    timedOut: boolean,
    retryInMs: number | undefined,
  ): void {
    this.counts.running--;
    const error = toError(thrown);
    const durationMs = this.elapsed(task);
    inSpan(task.span, task.parentContext, () => {
      if (retryInMs === undefined) {
        this.taskFailed(task, source, error, timedOut, durationMs);
        return;
      }
      if (!this.durable) this.counts.pending++;
      safeLog(this.logger, 'warn', LOG_MESSAGES.taskRetrying, {
        ...failureFields(task, source.describeRequest(), error, timedOut, durationMs),
        retryInMs,
      });
    });
    this.attemptOver(task, timedOut ? 'timed_out' : 'failed', error, durationMs, meters());
  }

  /**
   * BullMQ failed a job with no attempt of ours running (it stalled, or started, too often): the
   * task has ended failed, logged and hooked like any other.
   */
  failedWithoutAttempt(task: Attempting, source: RequestSource, thrown: unknown): void {
    this.taskFailed(task, source, toError(thrown), false, 0);
  }

  /**
   * `drain()` gave up on a task: a running attempt is cut short (its span and duration say
   * `abandoned`), a hand-off's producer span ends so too, a pending task never started. Counted
   * now; its line (at `error`, with the state it was in) is returned, for `writeLines()`.
   */
  abandoned(
    task: Attempting,
    source: RequestSource,
    state: AbandonedState,
    reason: TaskAbandonedError = new TaskAbandonedError('task abandoned by drain()'),
  ): LogLine {
    if (task.lease !== undefined) return this.leftToWorkers(task, source, state, reason);
    const line: LogLine = {
      message: LOG_MESSAGES.taskAbandoned,
      fields: {
        ...requestFields(task.name, source.describeRequest()),
        state,
        attempt: task.attempt,
      },
      span: task.span,
      parent: task.parentContext,
    };
    this.counts.abandoned++;
    if (state === 'running') {
      this.counts.running--;
      this.attemptOver(task, 'abandoned', reason, this.elapsed(task), meters());
      return line;
    }
    this.counts.pending--;
    if (task.span !== undefined) {
      endSpan(task.span, 'abandoned', reason); // an enqueue's
      task.span = undefined;
    }
    this.taskOver(task.name, 'abandoned');
    return line;
  }

  /**
   * A task added with `addInTransaction()` will not be finished here: its job stays in the database
   * for the workers (if its transaction committed). Counted now, whatever it was doing (a running
   * attempt is cut short, as an abandoned one is, but its outcome says `left_to_workers`); its line
   * is returned, for the caller to write at the level the reason deserves.
   */
  leftToWorkers(task: Attempting, source: RequestSource, state: LeftState, error?: Error): LogLine {
    const line: LogLine = {
      message: LOG_MESSAGES.leftToWorkers,
      fields: {
        ...requestFields(task.name, source.describeRequest()),
        state,
        attempt: task.attempt,
        ...(task.jobId !== undefined && { jobId: task.jobId }),
        ...(error !== undefined && state !== 'running' && { error: errorFields(error) }),
      },
      span: task.span,
      parent: task.parentContext,
    };
    this.counts.leftToWorkers++;
    if (state === 'running') {
      this.counts.running--;
      this.attemptOver(task, 'left_to_workers', error, this.elapsed(task), meters());
    } else {
      this.counts.pending--;
      this.endEnqueueSpan(task, 'left_to_workers', error); // an insert's, when one is in flight
      this.taskOver(task.name, 'left_to_workers');
    }
    task.lease?.ended('left_to_workers');
    return line;
  }

  /**
   * How a transactional task ended here could not be written to the database (it failed, or the job
   * was settled already): a worker may run the task again, or has. Logged at `error`.
   */
  jobNotSettled(
    task: Attempting,
    source: RequestSource,
    outcome: LeaseOutcome,
    error?: Error,
  ): void {
    safeLog(this.logger, 'error', LOG_MESSAGES.jobNotSettled, {
      ...requestFields(task.name, source.describeRequest()),
      jobId: task.jobId,
      outcome,
      ...(error === undefined ? { reason: 'settled already' } : { error: errorFields(error) }),
    });
  }

  /**
   * A transactional task ended here after its lease had run out: a worker may have taken its job
   * meanwhile, and so run it again. Logged at `error`, with how far past the lease it ended.
   */
  leaseOutrun(
    task: Attempting,
    source: RequestSource,
    outcome: LeaseOutcome,
    overrunMs: number,
  ): void {
    safeLog(this.logger, 'error', LOG_MESSAGES.leaseOutrun, {
      ...requestFields(task.name, source.describeRequest()),
      jobId: task.jobId,
      outcome,
      overrunMs: Math.round(overrunMs),
    });
  }

  /** Writes a line now, inside its task's span (or the context it was added in). */
  write(line: LogLine, level: LogLevel): void {
    inSpan(line.span, line.parent, () => safeLog(this.logger, level, line.message, line.fields));
  }

  /**
   * Writes lines at `error` at the pace the logger takes them, each inside its task's span:
   * thousands at once (a drain() that gives up on them) would otherwise outrun a File transport
   * and spill to stderr. Past `deadline` (a `performance.now()`) the rest go to stderr at once,
   * formatted as the logger would have, so that a stuck logger cannot hold the caller for long.
   */
  async writeLines(lines: LogLine[], deadline: number): Promise<void> {
    for (const line of lines) {
      if (performance.now() < deadline) await roomIn(this.logger, deadline);
      if (performance.now() >= deadline) {
        spillRecord(this.logger, 'error', line.message, line.fields);
        continue;
      }
      inSpan(line.span, line.parent, () =>
        safeLog(this.logger, 'error', line.message, line.fields),
      );
    }
  }

  /**
   * A task was refused: the queue held `maxPending` tasks (it never was pending), or its client
   * went away (it was). Counted one by one. A client that went away is logged at `warn` per task;
   * a full queue is tallied per request and logged at `error` once per request and per second
   * (see `RejectionTallies`), since an overflow comes by the million.
   */
  rejected(task: Attempting, source: RequestSource, maxPending: number | undefined): void {
    const full = maxPending !== undefined;
    if (!full) this.counts.pending--;
    this.counts.rejected++;
    this.taskOver(task.name, 'rejected');
    if (full) {
      this.rejections.add(source, task.name, maxPending);
      return;
    }
    safeLog(this.logger, 'warn', LOG_MESSAGES.taskRejected, {
      ...requestFields(task.name, source.describeRequest()),
      reason: 'client aborted',
    });
  }

  /** Writes the line of the rejections tallied for `source`'s request, if any: its response has ended. */
  writeRejections(source: RequestSource): void {
    this.rejections.writeOf(source);
  }

  /** Writes every tally of rejections still open: for `drain()`, before the app exits. */
  writeAllRejections(): void {
    this.rejections.writeAll();
  }

  /**
   * A defined task is being handed to the durable queue: its producer span (held in `task.span`
   * until the hand-off ends), and the trace context the job carries.
   */
  enqueueStarted(task: Attempting, source: RequestSource): TraceCarrier | undefined {
    task.span = startEnqueueSpan(task, source.requestId);
    return traceCarrier(task.span);
  }

  /** The durable queue took the task: it has ended here, unless drain() had given it up already. */
  enqueued(task: Attempting, abandoned: boolean): void {
    if (abandoned) return; // counted, and its span ended, by abandoned()
    this.endEnqueueSpan(task, 'enqueued', undefined);
    this.counts.pending--;
    this.counts.enqueued++;
    this.taskOver(task.name, 'enqueued');
  }

  /**
   * A task added with `addInTransaction()` is in the caller's transaction: its producer span ends,
   * and it stays pending until the claim after the response.
   */
  inserted(task: Attempting): void {
    this.endEnqueueSpan(task, 'enqueued', undefined);
  }

  /**
   * Its insert failed: the caller's transaction fails, and that is the caller's to handle (the
   * promise it awaits rejects). Nothing was stored, so the task counts as never added.
   */
  insertFailed(task: Attempting, thrown: unknown): void {
    this.endEnqueueSpan(task, 'failed', toError(thrown));
    this.counts.pending--;
  }

  /**
   * The durable queue refused the task: logged. It stays pending and runs here instead, unless
   * drain() had given it up: then it does not run, and the line says so.
   */
  enqueueFailed(
    task: Attempting,
    source: RequestSource,
    thrown: unknown,
    abandoned: boolean,
  ): void {
    const error = toError(thrown);
    this.endEnqueueSpan(task, 'failed', error);
    const message = abandoned ? LOG_MESSAGES.enqueueFailedAbandoned : LOG_MESSAGES.enqueueFailed;
    safeLog(this.logger, 'error', message, {
      ...requestFields(task.name, source.describeRequest()),
      error: errorFields(error),
    });
  }

  private endEnqueueSpan(task: Attempting, outcome: TaskOutcome, error: Error | undefined): void {
    if (task.span === undefined) return;
    endSpan(task.span, outcome, error);
    task.span = undefined;
  }

  /**
   * Ends the attempt's span and records its duration (when measured); an attempt that succeeded
   * or was abandoned is also the end of its task, counted here (a failed one was, in `taskFailed`).
   */
  private attemptOver(
    task: Attempting,
    outcome: AttemptOutcome,
    error: Error | undefined,
    durationMs: number | undefined,
    instruments: Instruments | undefined,
  ): void {
    const { span } = task;
    if (span !== undefined) {
      task.span = undefined;
      endSpan(span, outcome, error);
    }
    if (instruments === undefined) return;
    recordAttempt(instruments, task.name, outcome, durationMs! / 1_000, this.durable);
    if (outcome === 'succeeded' || outcome === 'abandoned' || outcome === 'left_to_workers')
      recordTaskEnd(instruments, task.name, outcome, this.durable);
  }

  private elapsed(task: Attempting): number {
    return performance.now() - task.startedAt;
  }

  /** Counts a task's end in the metrics (its stats() counter is the caller's). */
  private taskOver(name: string, outcome: TaskOutcome): void {
    const instruments = meters();
    if (instruments !== undefined) recordTaskEnd(instruments, name, outcome, this.durable);
  }

  /** The task has failed for good: counted, logged at `error`, then `onTaskError` is called. */
  private taskFailed(
    task: Attempting,
    source: RequestSource,
    error: Error,
    timedOut: boolean,
    durationMs: number,
  ): void {
    if (timedOut) this.counts.timedOut++;
    else this.counts.failed++;
    this.taskOver(task.name, timedOut ? 'timed_out' : 'failed');
    const request = source.describeRequest();
    const fields = failureFields(task, request, error, timedOut, durationMs);
    safeLog(this.logger, 'error', LOG_MESSAGES.taskFailed, fields);
    this.callOnTaskError(fields, error, request);
    task.lease?.ended('failed', error);
  }

  /** Calls `onTaskError`; a throw or a rejection in it is logged, never let loose. */
  private callOnTaskError(
    fields: ReturnType<typeof failureFields>,
    error: Error,
    request: TaskRequest,
  ): void {
    const hook = this.onTaskError;
    if (hook === undefined) return;
    const { task, attempt, durationMs, timedOut, jobId } = fields;
    const withJob = jobId === undefined ? {} : { jobId };
    const failure: TaskFailure = {
      task,
      attempt,
      durationMs,
      timedOut,
      error,
      request,
      ...withJob,
    };
    const logFailure = (thrown: unknown) =>
      safeLog(this.logger, 'error', LOG_MESSAGES.hookFailed, {
        ...requestFields(task, request),
        ...withJob,
        hook: 'onTaskError',
        error: errorFields(toError(thrown)),
      });
    try {
      const result = hook(failure);
      if (isThenable(result)) settle(result).catch(logFailure);
    } catch (thrown) {
      logFailure(thrown);
    }
  }
}

/** The fields that place a task: which one, for which request. */
function requestFields(task: string, request: TaskRequest) {
  return { task, ...placeFields(request) };
}

/** The fields that place a line: for which request. */
function placeFields(request: TaskRequest) {
  return {
    requestId: request.id,
    method: request.method,
    url: request.url,
    statusCode: request.statusCode,
  };
}

/** The fields of a failed attempt's line, and what `onTaskError` is told. */
function failureFields(
  task: Attempting,
  request: TaskRequest,
  error: Error,
  timedOut: boolean,
  durationMs: number,
) {
  return {
    ...requestFields(task.name, request),
    attempt: task.attempt,
    durationMs: Math.round(durationMs * 100) / 100,
    timedOut,
    ...(task.jobId !== undefined && { jobId: task.jobId }),
    error: errorFields(error),
  };
}
