/**
 * `BackgroundTasks`: the task queue of one request, at `res.locals.backgroundTasks`. Routes add
 * to it; its middleware's runner runs the tasks once the response has ended. It shows only its
 * public API: everything else is in private fields, so that `res.locals` still serialises
 * (`JSON.stringify` gives `{ "size": n }`) and prints short.
 */
import { inspect } from 'node:util';
import type { Request, Response } from 'express';
import { transactionalTask } from './transactional-task';
import type { DefinedTask } from './define-task';
import type { TransactionClient } from './durable';
import { RequestQueue } from './request-queue';
import type { TaskRunner } from './runner';
import { toTask } from './to-task';
import type { TaskObject } from './types';

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
  readonly #runner: TaskRunner;
  readonly #requestId: string;
  /** Until the first `add()` hands them to the record. */
  #req: Request | undefined;
  #res: Response | undefined;
  /** The runner's record of this request's tasks, made at the first `add()`. */
  #record: RequestQueue | undefined = undefined;

  /** @internal Made by the middleware (or the error handler), one per request. */
  constructor(runner: TaskRunner, req: Request, res: Response, requestId: string) {
    this.#runner = runner;
    this.#req = req;
    this.#res = res;
    this.#requestId = requestId;
  }

  /** The request's id, as in `res.locals.requestId` and every log line of its tasks. */
  get requestId(): string {
    return this.#requestId;
  }

  /** Tasks added and not yet started (nor handed to a durable queue). */
  get size(): number {
    return this.#record?.size ?? 0;
  }

  /** Queues `fn(...args)`; the arguments are checked against `fn`'s parameters. */
  add<Args extends unknown[]>(fn: (...args: Args) => unknown, ...args: Args): this;
  /** Queues `task.run(ctx)`, with its own name, timeout and retries. */
  add(task: TaskObject): this;
  /** Queues a task made by `defineTask`; the payload must survive JSON. */
  add<Payload>(task: DefinedTask<Payload>, payload: NoInfer<Payload>): this;
  add(task: unknown, ...args: unknown[]): this {
    const runner = this.#runner;
    const queued = toTask(task, args, runner.policy, runner.maxPayloadBytes);
    runner.submit(this.#recordOf(), queued);
    return this;
  }

  /**
   * Writes a defined task's job through `db`, inside the caller's transaction: it commits or rolls
   * back with the caller's rows. Resolves once the insert is done; rejects if it failed (then the
   * transaction fails, and that is the caller's to handle). Once the response has ended and the
   * commit is proven (by a notification the transaction sent, or else by claiming the job), this
   * process runs it at once; if it cannot (it died, say), a worker runs it when its lease ends.
   * Needs `durable: pgBossDurable(...)`; anything else is a TypeError. Commit before you respond: a
   * commit later than `commitWaitMs` after the response leaves the job to the workers.
   */
  async addInTransaction<Payload>(
    db: TransactionClient,
    task: DefinedTask<Payload>,
    payload: NoInfer<Payload>,
  ): Promise<void> {
    const runner = this.#runner;
    const queued = transactionalTask(
      runner.durable,
      db,
      task,
      payload,
      runner.policy,
      runner.maxPayloadBytes,
    );
    await runner.insertInTransaction(this.#recordOf(), queued, db);
  }

  /** Removes the tasks not yet started (not one that runs or waits to retry), and returns how many. */
  clear(): number {
    const record = this.#record;
    const removed = record === undefined ? 0 : record.clear();
    if (removed > 0) this.#runner.withdraw(record!, removed);
    return removed;
  }

  /** The runner's record of this request, made at the first task. */
  #recordOf(): RequestQueue {
    if (this.#record === undefined) {
      this.#record = new RequestQueue(this.#req, this.#res, this.#requestId);
      this.#req = this.#res = undefined;
    }
    return this.#record;
  }

  /** What `JSON.stringify(res.locals)` shows of the queue. */
  toJSON(): { size: number } {
    return { size: this.size };
  }

  /** What `util.inspect` and `console.log` show. */
  [inspect.custom](): string {
    return `BackgroundTasks { size: ${this.size} }`;
  }

  /** @internal The runner's record, for the tests of what it holds. */
  static recordOf(tasks: BackgroundTasks): RequestQueue | undefined {
    return tasks.#record;
  }
}
