/**
 * What `addInTransaction(db, task, payload)` is given, checked at the call site and made a `Task`:
 * the durable queue must be transactional, `db` a SQL client, `task` a defined task with a
 * timeout, and the payload must pass `add()`'s check. Each refusal is a TypeError that says why.
 */
import { isDefinedTask, type DefinedTask } from './define-task';
import { isTransactional, type DurableQueue, type TransactionClient } from './durable';
import { show, type ResolvedPolicy } from './options';
import type { Task } from './task';
import { toTask } from './to-task';

const WHERE = 'addInTransaction()';

/** The task that `addInTransaction()` adds, or a TypeError that says what is wrong. */
export function transactionalTask(
  durable: DurableQueue | undefined,
  db: unknown,
  task: unknown,
  payload: unknown,
  defaults: ResolvedPolicy,
  maxPayloadBytes: number,
): Task {
  if (durable === undefined) {
    throw new TypeError(
      `${WHERE}: this middleware has no durable queue; create it with backgroundTasks({ durable: pgBossDurable(...) }) ` +
        'from express-background-tasks/pg-boss to write tasks in a SQL transaction',
    );
  }
  if (!isTransactional(durable)) {
    throw new TypeError(
      `${WHERE}: the middleware's durable queue cannot join a SQL transaction (Redis cannot: a BullMQ job ` +
        'is written outside it, so the row and its task could not commit as one); use pgBossDurable(...) ' +
        'from express-background-tasks/pg-boss',
    );
  }
  if (!isClient(db)) {
    throw new TypeError(
      `${WHERE}: db must be the transaction's client: a node-postgres client with query(text, values), ` +
        `or pg-boss's { executeSql(text, values) } (fromKnex, fromPrisma, …), got ${show(db)}`,
    );
  }
  if (!isDefinedTask(task))
    throw new TypeError(`${WHERE}: task must be a defineTask() task, got ${show(task)}`);
  const queued = toTask(task as DefinedTask<unknown>, [payload], defaults, maxPayloadBytes);
  if (queued.policy.timeoutMs === 0) {
    throw new TypeError(
      `${WHERE}: task "${queued.name}" has no timeout (timeoutMs: 0); a transactional task needs one: ` +
        'its lease, how long the workers leave its job to this process, is derived from it',
    );
  }
  return queued;
}

function isClient(db: unknown): db is TransactionClient {
  if (db === null || (typeof db !== 'object' && typeof db !== 'function')) return false;
  const client = db as { query?: unknown; executeSql?: unknown };
  return typeof client.executeSql === 'function' || typeof client.query === 'function';
}
