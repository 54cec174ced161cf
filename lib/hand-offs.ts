/**
 * Defined tasks on their way to the durable queue. Each stays pending until the queue answers:
 * taken, it has ended here; refused, it is logged and handed back to run in this process. When
 * `drain()` gives up on one, whatever the queue answers later is neither counted nor run again.
 */
import type { DurableJob, DurableQueue } from './durable';
import type { TaskObserver } from './observer';
import type { RequestQueue } from './request-queue';
import type { Task } from './task';
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
    const { span, trace } = this.observer.enqueueStarted(task, queue);
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
      enqueuing = this.durable.enqueue(job);
    } catch (thrown) {
      enqueuing = Promise.reject(thrown);
    }
    settle(enqueuing).then(
      () => {
        this.inFlight.delete(handOff);
        this.observer.enqueued(task, span, !handOff.abandoned);
        if (!handOff.abandoned) this.ends.enqueued(queue);
      },
      (thrown: unknown) => {
        this.inFlight.delete(handOff);
        this.observer.enqueueFailed(task, queue, span, thrown, handOff.abandoned);
        if (!handOff.abandoned) this.ends.runHere(queue, task);
      },
    );
  }

  /** Gives up on every hand-off in flight, each counted and logged as abandoned. */
  abandonAll(): void {
    for (const handOff of this.inFlight) {
      handOff.abandoned = true;
      this.observer.abandoned(handOff.task, handOff.queue, 'enqueueing');
    }
    this.inFlight.clear();
  }
}

interface HandOff {
  readonly queue: RequestQueue;
  readonly task: Task;
  /** drain() gave up on it. */
  abandoned: boolean;
}
