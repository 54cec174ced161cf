/**
 * Named tasks with a JSON payload: the form a durable queue can store and a worker on another
 * machine can run. Without a durable queue they run in-process like any other task.
 */
import { checkOptionsObject, resolvePolicy, type ResolvedPolicy } from './options';
import { Task } from './task';
import type { TaskContext, TaskPolicy } from './types';

const DEFINED = Symbol('express-background-tasks.defined');

export interface DefinedTask<Payload> {
  readonly name: string;
  readonly handler: (payload: Payload, ctx: TaskContext) => unknown;
  /** The policy given to `defineTask`; fields left out take the middleware's (or worker's) defaults. */
  readonly options: Readonly<TaskPolicy>;
  /** @internal */
  readonly [DEFINED]: true;
  /** @internal Checks and copies the payload, and makes the task that runs it. */
  toTask(payload: unknown, defaults: ResolvedPolicy): Task;
}

/**
 * Defines a task by name. `add(task, payload)` checks the payload at the call site: it must
 * survive JSON unchanged (no functions, symbols, BigInt, cycles, NaN, Dates, Maps or class instances).
 */
export function defineTask<Payload>(
  name: string,
  handler: (payload: Payload, ctx: TaskContext) => unknown,
  options?: TaskPolicy,
): DefinedTask<Payload> {
  if (typeof name !== 'string' || name === '' || name.length > 200) {
    throw new TypeError('defineTask(): name must be a string of 1 to 200 characters');
  }
  if (typeof handler !== 'function')
    throw new TypeError(`defineTask("${name}"): handler must be a function`);
  // A frozen copy: later changes to the caller's object must not change what runs.
  const policy: Readonly<TaskPolicy> = Object.freeze({
    ...checkOptionsObject('defineTask', options, ['timeoutMs', 'retries', 'retryDelayMs']),
  });
  resolvePolicy('defineTask', policy, { timeoutMs: 0, retries: 0, retryDelayMs: 0 });
  const definition: DefinedTask<Payload> = {
    name,
    handler,
    options: policy,
    [DEFINED]: true,
    toTask(payload, defaults) {
      const copy = jsonCopy(name, payload);
      const run = (ctx: TaskContext) => handler(copy as Payload, ctx);
      return new Task(
        name,
        resolvePolicy('defineTask', policy, defaults),
        undefined,
        [copy],
        { name, run },
        definition as DefinedTask<unknown>,
      );
    },
  };
  return Object.freeze(definition);
}

export function isDefinedTask(value: unknown): value is DefinedTask<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { [DEFINED]?: unknown })[DEFINED] === true
  );
}

const MAX_DEPTH = 100;

/** The payload as it will come back from JSON, or a TypeError naming the first part that would not. */
export function jsonCopy(task: string, payload: unknown): unknown {
  const problem = jsonProblem(payload, 'payload', new Set(), 0);
  if (problem !== undefined) {
    throw new TypeError(`add(): the payload of task "${task}" does not survive JSON: ${problem}`);
  }
  return payload === undefined ? undefined : JSON.parse(JSON.stringify(payload));
}

function jsonProblem(
  value: unknown,
  path: string,
  seen: Set<object>,
  depth: number,
): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : `${path} is ${value}`;
    case 'object':
      break;
    default:
      return `${path} is a ${typeof value}`;
  }
  if (value === null) return undefined;
  if (depth >= MAX_DEPTH) return `${path} is nested more than ${MAX_DEPTH} levels deep`;
  if (seen.has(value)) return `${path} is a cycle`;
  const array = Array.isArray(value);
  const proto = Object.getPrototypeOf(value);
  if (!array && proto !== Object.prototype && proto !== null) {
    return `${path} is a ${proto?.constructor?.name ?? 'class instance'}, not a plain object`;
  }
  if (Object.getOwnPropertySymbols(value).length > 0) return `${path} has symbol keys`;
  if (array && Object.keys(value).length !== (value as unknown[]).length)
    return `${path} has holes`;
  seen.add(value);
  for (const key of Object.keys(value)) {
    const item = (value as Record<string, unknown>)[key];
    if (array && item === undefined) return `${path}[${key}] is undefined`;
    const problem = jsonProblem(
      item,
      array ? `${path}[${key}]` : `${path}.${key}`,
      seen,
      depth + 1,
    );
    if (problem !== undefined) return problem;
  }
  seen.delete(value);
  return undefined;
}
