/**
 * Named tasks with a JSON payload: the form a durable queue can store and a worker on another
 * machine can run. Without a durable queue they run in-process like any other task.
 */
import { checkMaxPayloadBytes, checkOptionsObject, resolvePolicy } from './options';
import type { TaskContext, TaskPolicy } from './types';

const DEFINED = Symbol('express-background-tasks.defined');

/** The options of `defineTask`: a task policy, and a payload limit of its own. */
export interface DefineTaskOptions extends TaskPolicy {
  /**
   * The largest payload this task takes, in UTF-8 bytes of its JSON (`Infinity`: no limit).
   * Default: the middleware's `maxPayloadBytes`.
   */
  maxPayloadBytes?: number;
}

export interface DefinedTask<Payload> {
  readonly name: string;
  readonly handler: (payload: Payload, ctx: TaskContext) => unknown;
  /** The options given to `defineTask`; fields left out take the middleware's (or worker's) defaults. */
  readonly options: Readonly<DefineTaskOptions>;
  /** @internal */
  readonly [DEFINED]: true;
}

/**
 * Defines a task by name. `add(task, payload)` checks the payload at the call site: it must
 * survive JSON unchanged (no functions, symbols, BigInt, cycles, NaN, Dates, Maps or class
 * instances; see `copyPayload`), and the task gets the copy taken then (see to-task.ts).
 */
export function defineTask<Payload>(
  name: string,
  handler: (payload: Payload, ctx: TaskContext) => unknown,
  options?: DefineTaskOptions,
): DefinedTask<Payload> {
  if (typeof name !== 'string' || name === '' || name.length > 200) {
    throw new TypeError('defineTask(): name must be a string of 1 to 200 characters');
  }
  if (typeof handler !== 'function')
    throw new TypeError(`defineTask("${name}"): handler must be a function`);
  // A frozen copy: later changes to the caller's object must not change what runs.
  const policy: Readonly<DefineTaskOptions> = Object.freeze({
    ...checkOptionsObject('defineTask', options, [
      'timeoutMs',
      'retries',
      'retryDelayMs',
      'maxPayloadBytes',
    ]),
  });
  resolvePolicy('defineTask', policy, { timeoutMs: 0, retries: 0, retryDelayMs: 0 });
  if (policy.maxPayloadBytes !== undefined)
    checkMaxPayloadBytes('defineTask', policy.maxPayloadBytes, Infinity);
  const definition: DefinedTask<Payload> = { name, handler, options: policy, [DEFINED]: true };
  return Object.freeze(definition);
}

export function isDefinedTask(value: unknown): value is DefinedTask<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { [DEFINED]?: unknown })[DEFINED] === true
  );
}
