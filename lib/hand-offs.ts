/**
 * Defined tasks on their way to the durable queue. Each stays pending until the queue answers:
 * taken, it has ended here; refused, it is logged and handed back to run in this process. When
 * `drain()` gives up on one, whatever the queue answers later is neither counted nor run again.
 */
import type { DurableJob, DurableQueue } from './durable';
import type { LogLine, TaskObserver } from './observer';
import type { RequestQueue } from './request-queue';
import type { Task } from './task';
import { runInSpan } from './telemetry';
import { settle } from './thrown';

/** What the runner does when a hand-off ends. */
export interface HandOffEnds {
  /** The durable queue took the task. */
  enqueued(queue: RequestQueue): void;
  /** It refused it: run it here. */
  runHere(queue: RequestQueue, task: Task): void;
}

export class HandOffs {
  private readonly inFlight = new Set<HandOff>();

  constructor(
    private readonly durable: DurableQueue,
    private readonly observer: TaskObserver,
    private readonly ends: HandOffEnds,
  ) {}

  /** Gives `task` to the durable queue. */
  send(queue: RequestQueue, task: Task): void {
    const handOff: HandOff = { queue, task, abandoned: false };
    this.inFlight.add(handOff);
    storeJob(this.observer, queue, task, (job) => this.durable.enqueue(job)).then(
      () => {
        this.inFlight.delete(handOff);
        this.observer.enqueued(task, handOff.abandoned);
        if (!handOff.abandoned) this.ends.enqueued(queue);
      },
      (thrown: unknown) => {
        this.inFlight.delete(handOff);
        this.observer.enqueueFailed(task, queue, thrown, handOff.abandoned);
        if (!handOff.abandoned) this.ends.runHere(queue, task);
      },
    );
  }

  /** Gives up on every hand-off in flight, each counted as abandoned; returns their lines. */
  abandonAll(): LogLine[] {
    const lines: LogLine[] = [];
    for (const handOff of this.inFlight) {
      handOff.abandoned = true;
      lines.push(this.observer.abandoned(handOff.task, handOff.queue, 'enqueueing'));
    }
    this.inFlight.clear();
    return lines;
  }
}

/**
 * Starts the task's producer span and calls `store` with its job inside that span (so that what a
 * pg, Redis or BullMQ instrumentation traces is its child): the hand-off after the response, and
 * the insert of `addInTransaction()`.
 */
export function storeJob<T>(
  observer: TaskObserver,
  queue: RequestQueue,
  task: Task,
  store: (job: DurableJob) => PromiseLike<T> | T,
): Promise<T> {
  const trace = observer.enqueueStarted(task, queue);
  const job: DurableJob = {
    name: task.name,
    payload: task.args[0],
    request: queue.describeRequest(),
    ...task.policy,
    ...(trace !== undefined && { trace }),
  };
  const { span } = task;
  return callDurable(() =>
    span === undefined ? store(job) : runInSpan(span, task.parentContext, store, undefined, job),
  );
}

/** Calls `fn`, a method of the durable queue, as a native promise: a sync throw becomes a rejection. */
export function callDurable<T>(fn: () => PromiseLike<T> | T): Promise<T> {
  try {
    return settle(fn()) as Promise<T>;
  } catch (thrown) {
    return Promise.reject(thrown);
  }
}

interface HandOff {
  readonly queue: RequestQueue;
  readonly task: Task;
  /** drain() gave up on it. */
  abandoned: boolean;
}
