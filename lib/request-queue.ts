/**
 * The runner's record of one request's tasks: what waits, what runs, whether the response has
 * ended, and the links of the runner's lists; and its record of the attempt that runs. Made at
 * the request's first `add()` and never reachable from `res.locals`, where the queue (queue.ts)
 * shows only its public API.
 */
import type { AsyncResource } from 'node:async_hooks';
import type { Request, Response } from 'express';
import type { AttemptContext } from './attempt';
import type { RequestSource } from './attempting';
import type { Task } from './task';
import type { Timed } from './timeouts';
import type { TaskRequest } from './types';

export class RequestQueue implements RequestSource {
  /**
   * The oldest task not yet started, and the later ones from `head` in `rest`. Most requests
   * queue one task, which may wait behind `concurrency` for a while: it needs no array.
   */
  private first: Task | undefined = undefined;
  private rest: Task[] | undefined = undefined;
  private head = 0;
  /** Defined tasks bound for the durable queue when the response ends. */
  private durable: Task[] | undefined = undefined;
  /** The request as tasks see it, fixed once the response has ended and it is first needed. */
  private request: TaskRequest | undefined = undefined;
  /** The response has ended (finished or aborted): tasks may start. */
  ended = false;
  /** An on-finished listener is attached. */
  watching = false;
  /** The runner is working through this queue (running, in line, or waiting to retry). */
  active = false;
  /** In the runner's live queues (see `LiveQueues`). */
  isLive = false;
  previousLive: RequestQueue | undefined = undefined;
  nextLive: RequestQueue | undefined = undefined;
  /** The async attempt now running. */
  attempt: RunningAttempt | undefined = undefined;
  /** A task that failed and waits for its retry; it runs before the rest. */
  retrying: Task | undefined = undefined;
  retryTimer: NodeJS.Timeout | undefined = undefined;
  /** The turn of the event loop the queue waits for between two tasks. */
  turn: NodeJS.Immediate | undefined = undefined;
  /** The request's async context, taken at the first task: where every start runs. */
  scope: AsyncResource | undefined = undefined;

  constructor(
    /** Until released (see `release()`). */
    public req: Request | undefined,
    /** Until released (see `release()`). */
    public res: Response | undefined,
    readonly requestId: string,
  ) {}

  /** Tasks added and not yet started (nor handed to a durable queue). */
  get size(): number {
    return (
      (this.first === undefined ? 0 : 1) +
      (this.rest === undefined ? 0 : this.rest.length - this.head) +
      (this.durable?.length ?? 0)
    );
  }

  push(task: Task): void {
    if (this.first === undefined && this.rest === undefined) this.first = task;
    // `[task]`, not `[]` then push: a first push gives an empty array room for 17 (152 bytes).
    else if (this.rest === undefined) this.rest = [task];
    else this.rest.push(task);
  }

  pushDurable(task: Task): void {
    (this.durable ??= []).push(task);
  }

  /** Removes and returns the tasks bound for the durable queue. */
  takeDurable(): Task[] | undefined {
    const durable = this.durable;
    this.durable = undefined;
    return durable;
  }

  /** Removes the tasks not yet started (not one that runs or waits to retry); returns how many. */
  clear(): number {
    const removed = this.size;
    this.first = this.rest = undefined;
    this.head = 0;
    this.durable = undefined;
    return removed;
  }

  /** A task is ready to run here. */
  hasNext(): boolean {
    return this.retrying !== undefined || this.first !== undefined || this.rest !== undefined;
  }

  /** The task to start next: one waiting to retry, else the oldest. */
  takeNext(): Task | undefined {
    const retry = this.retrying;
    if (retry !== undefined) {
      this.retrying = undefined;
      return retry;
    }
    const first = this.first;
    if (first !== undefined) {
      this.first = undefined;
      return first;
    }
    const rest = this.rest;
    if (rest === undefined) return undefined;
    const task = rest[this.head++];
    if (this.head === rest.length) {
      this.rest = undefined;
      this.head = 0;
    }
    return task;
  }

  /** Removes and returns every task not yet started: durable ones, a waiting retry, the rest. */
  takeAll(): Task[] {
    const all: Task[] = this.takeDurable() ?? [];
    for (let task = this.takeNext(); task !== undefined; task = this.takeNext()) all.push(task);
    return all;
  }

  /**
   * The response has ended and tasks are still outstanding: fixes `request`, and lets go of req
   * and res, so that a task which runs for long does not keep them alive. (A queue whose tasks
   * all ended synchronously never needs this: it dies with its response.)
   */
  release(): void {
    if (this.res === undefined) return;
    this.describeRequest();
    this.req = undefined;
    this.res = undefined;
  }

  /** The request as tasks and logs see it. Once the response has ended it no longer changes. */
  describeRequest(): TaskRequest {
    if (this.request !== undefined) return this.request;
    const req = this.req!;
    const res = this.res!;
    const request: TaskRequest = {
      id: this.requestId,
      method: req.method,
      url: urlOf(req),
      statusCode: res.statusCode,
      aborted: this.ended && !res.writableFinished,
    };
    if (this.ended) this.request = request;
    return request;
  }
}

/** The URL logs and tasks show for a request: the original one, before any mounting stripped it. */
export function urlOf(req: Request): string {
  return req.originalUrl ?? req.url;
}

/** An attempt that returned a promise: what its timeout, its settlement and `drain()` share. */
export class RunningAttempt implements Timed {
  /** Settled, timed out or abandoned: a later outcome is ignored. */
  ended = false;
  deadline = 0;
  // Internal in Timed, and so here: a published declaration naming them would not compile.
  /** @internal */
  timeoutList: Timed['timeoutList'] = undefined;
  /** @internal */
  previousTimed: Timed | undefined = undefined;
  /** @internal */
  nextTimed: Timed | undefined = undefined;

  constructor(
    readonly queue: RequestQueue,
    readonly task: Task,
    readonly ctx: AttemptContext | undefined,
  ) {}
}
