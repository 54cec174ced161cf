/**
 * `BackgroundTasks`: the task queue of one request, at `res.locals.backgroundTasks`. Routes add
 * to it; its middleware's runner runs it once the response has ended.
 */
import type { AsyncResource } from 'node:async_hooks';
import type { Request, Response } from 'express';
import type { DefinedTask } from './define-task';
import type { TaskRunner, Attempt } from './runner';
import { toTask, type Task } from './task';
import type { TaskObject, TaskRequest } from './types';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      /** This request's background tasks (set by `backgroundTasks()` or, on an error, `httpErrorHandler()`). */
      backgroundTasks: BackgroundTasks;
      /** The request id used in every log line of this request's tasks. */
      requestId: string;
    }
  }
}

export class BackgroundTasks {
  /** @internal Tasks not yet started, oldest first from `head`. Made on the first `add()`. */
  private list: Task[] | undefined = undefined;
  private head = 0;
  /** @internal The response has ended (finished or aborted): tasks may start. */
  ended = false;
  /** @internal The request as tasks see it, fixed once the response has ended and it is first needed. */
  private request: TaskRequest | undefined = undefined;
  /** @internal An on-finished listener is attached. */
  watching = false;
  /** @internal The runner is working through this queue (running, in line, or waiting to retry). */
  active = false;
  /** @internal In the runner's live queues (see `LiveQueues`). */
  isLive = false;
  /** @internal */
  previousLive: BackgroundTasks | undefined = undefined;
  /** @internal */
  nextLive: BackgroundTasks | undefined = undefined;
  /** @internal The async attempt now running. */
  attempt: Attempt | undefined = undefined;
  /** @internal A task that failed and waits for its retry; it runs before the rest. */
  retrying: Task | undefined = undefined;
  /** @internal */
  retryTimer: NodeJS.Timeout | undefined = undefined;
  /** @internal The request's async context, taken at the first task: where every start runs. */
  scope: AsyncResource | undefined = undefined;
  /** @internal Defined tasks bound for the durable queue when the response ends. */
  private durable: Task[] | undefined = undefined;

  /** @internal */
  readonly runner: TaskRunner;
  /** @internal Until released (see `release()`). */
  req: Request | undefined;
  /** @internal Until released (see `release()`). */
  res: Response | undefined;
  /** The request's id, as in `res.locals.requestId` and every log line of its tasks. */
  readonly requestId: string;

  /** @internal Made by the middleware (or the error handler), one per request. */
  constructor(runner: TaskRunner, req: Request, res: Response, requestId: string) {
    this.runner = runner;
    this.req = req;
    this.res = res;
    this.requestId = requestId;
  }

  /** Tasks added and not yet started (nor handed to a durable queue). */
  get size(): number {
    return (
      (this.list === undefined ? 0 : this.list.length - this.head) + (this.durable?.length ?? 0)
    );
  }

  /** Queues `fn(...args)`; the arguments are checked against `fn`'s parameters. */
  add<Args extends unknown[]>(fn: (...args: Args) => unknown, ...args: Args): this;
  /** Queues `task.run(ctx)`, with its own name, timeout and retries. */
  add(task: TaskObject): this;
  /** Queues a task made by `defineTask`; the payload must survive JSON. */
  add<Payload>(task: DefinedTask<Payload>, payload: NoInfer<Payload>): this;
  add(task: unknown, ...args: unknown[]): this {
    this.runner.submit(this, toTask(task, args, this.runner.policy));
    return this;
  }

  /** Removes the tasks not yet started (not one that runs or waits to retry), and returns how many. */
  clear(): number {
    const removed = this.size;
    this.list = undefined;
    this.head = 0;
    this.durable = undefined;
    if (removed > 0) this.runner.withdraw(this, removed);
    return removed;
  }

  /** @internal */
  push(task: Task): void {
    // `[task]`, not `[]` then push: a first push gives an empty array room for 17 (152 bytes),
    // and most requests queue one task, which may wait behind `concurrency` for a while.
    if (this.list === undefined) this.list = [task];
    else this.list.push(task);
  }

  /** @internal */
  pushDurable(task: Task): void {
    (this.durable ??= []).push(task);
  }

  /** @internal Removes and returns the tasks bound for the durable queue. */
  takeDurable(): Task[] | undefined {
    const durable = this.durable;
    this.durable = undefined;
    return durable;
  }

  /** @internal A task is ready to run here. */
  hasNext(): boolean {
    return this.retrying !== undefined || (this.list !== undefined && this.head < this.list.length);
  }

  /** @internal The task to start next: one waiting to retry, else the oldest. */
  takeNext(): Task | undefined {
    const retry = this.retrying;
    if (retry !== undefined) {
      this.retrying = undefined;
      return retry;
    }
    const list = this.list;
    if (list === undefined || this.head === list.length) return undefined;
    const task = list[this.head++];
    if (this.head === list.length) {
      this.list = undefined;
      this.head = 0;
    }
    return task;
  }

  /** @internal Removes and returns every task not yet started: durable ones, a waiting retry, the rest. */
  takeAll(): Task[] {
    const all: Task[] = this.takeDurable() ?? [];
    for (let task = this.takeNext(); task !== undefined; task = this.takeNext()) all.push(task);
    return all;
  }

  /**
   * @internal The response has ended and tasks are still outstanding: fixes `request`, and lets
   * go of req and res, so that a task which runs for long does not keep them alive. (A queue
   * whose tasks all ended synchronously never needs this: it dies with its response.)
   */
  release(): void {
    if (this.res === undefined) return;
    this.describeRequest();
    this.req = undefined;
    this.res = undefined;
  }

  /** @internal The request as tasks and logs see it. Once the response has ended it no longer changes. */
  describeRequest(): TaskRequest {
    if (this.request !== undefined) return this.request;
    const req = this.req!;
    const res = this.res!;
    const request: TaskRequest = {
      id: this.requestId,
      method: req.method,
      url: req.originalUrl ?? req.url,
      statusCode: res.statusCode,
      aborted: this.ended && !res.writableFinished,
    };
    if (this.ended) this.request = request;
    return request;
  }
}
