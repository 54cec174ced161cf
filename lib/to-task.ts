/**
 * Turns what `add()` was given (a function and its arguments, a `{ name, run }` object, or a
 * defined task and its payload) into a `Task`, or throws a TypeError at the call site that says
 * what is wrong.
 */
import { isDefinedTask, type DefinedTask } from './define-task';
import { copyPayload } from './json-payload';
import { resolvePolicy, show, type ResolvedPolicy } from './options';
import { Task } from './task';
import type { TaskContext, TaskObject } from './types';

/** Builds a Task from the arguments of `add()`, or throws a TypeError that says what is wrong. */
export function toTask(
  task: unknown,
  args: unknown[],
  defaults: ResolvedPolicy,
  maxPayloadBytes: number,
): Task {
  if (typeof task === 'function') {
    return new Task(
      task.name || 'anonymous',
      defaults,
      task as (...args: unknown[]) => unknown,
      args,
      undefined,
      undefined,
    );
  }
  if (isDefinedTask(task)) {
    if (args.length !== 1)
      throw new TypeError(`add(): defined task "${task.name}" takes exactly one payload argument`);
    return definedTask(task, args[0], defaults, maxPayloadBytes);
  }
  if (task !== null && typeof task === 'object' && typeof (task as TaskObject).run === 'function') {
    if (args.length > 0)
      throw new TypeError('add(): an object-form task takes no arguments; pass them through run()');
    return objectTask(task as TaskObject, defaults);
  }
  throw new TypeError(
    `add(): expected a function, a { name, run } object or a defined task, got ${show(task)}`,
  );
}

function objectTask(task: TaskObject, defaults: ResolvedPolicy): Task {
  const { name } = task;
  if (name !== undefined && (typeof name !== 'string' || name === '')) {
    throw new TypeError(`add(): task name must be a non-empty string, got ${show(name)}`);
  }
  const hasPolicy =
    task.timeoutMs !== undefined || task.retries !== undefined || task.retryDelayMs !== undefined;
  const policy = hasPolicy ? resolvePolicy('add', task, defaults) : defaults;
  return new Task(name ?? (task.run.name || 'anonymous'), policy, undefined, [], task, undefined);
}

/** The task that runs a defined task with a checked copy of `payload`. */
function definedTask(
  definition: DefinedTask<unknown>,
  payload: unknown,
  defaults: ResolvedPolicy,
  maxPayloadBytes: number,
): Task {
  const { name, handler, options } = definition;
  const copy = copyPayload(name, payload, options.maxPayloadBytes ?? maxPayloadBytes);
  const run = (ctx: TaskContext) => handler(copy, ctx);
  return new Task(
    name,
    resolvePolicy('defineTask', options, defaults),
    undefined,
    [copy],
    { name, run },
    definition,
  );
}
