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
    const trace = this.observer.enqueueStarted(task, queue);
    const job: DurableJob = {
      name: task.name,
      payload: task.args[0],
      request: queue.describeRequest(),
      ...task.policy,
      ...(trace !== undefined && { trace }),
    };
    const handOff: HandOff = { queue, task, abandoned: false };
    this.inFlight.add(handOff);
    let enqueuing: unknown;
    try {
      // Inside the producer span: what a Redis or BullMQ instrumentation traces is its child.
      const { span } = task;
      enqueuing =
        span === undefined
          ? this.durable.enqueue(job)
          : runInSpan(span, task.parentContext, () => this.durable.enqueue(job), undefined);
    } catch (thrown) {
      enqueuing = Promise.reject(thrown);
    }
    settle(enqueuing).then(
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

interface HandOff {
  readonly queue: RequestQueue;
  readonly task: Task;
  /** drain() gave up on it. */
  abandoned: boolean;
}
