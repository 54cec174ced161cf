/**
 * Turns what `add()` was given (a function and its arguments, a `{ name, run }` object, or a
 * defined task and its payload) into a `Task`, or throws a TypeError at the call site that says
 * what is wrong. Each field of a task object is read once, here: a getter that throws gives a
 * TypeError naming the field, with the getter's error as its cause.
 */
import { isDefinedTask, type DefinedTask } from './define-task';
import { copyPayload } from './json-payload';
import { resolvePolicy, show, type ResolvedPolicy } from './options';
import { Task } from './task';
import { MAX_NAME_CHARS, clip } from './thrown';
import type { TaskContext, TaskObject, TaskPolicy } from './types';

/** Builds a Task from the arguments of `add()`, or throws a TypeError that says what is wrong. */
export function toTask(
  task: unknown,
  args: unknown[],
  defaults: ResolvedPolicy,
  maxPayloadBytes: number,
): Task {
  if (typeof task === 'function') {
    const fn = task as (...args: unknown[]) => unknown;
    return new Task(nameOf(readField(fn, 'name')), defaults, fn, args, undefined, undefined);
  }
  if (readDefined(task)) {
    if (args.length !== 1)
      throw new TypeError(`add(): defined task "${task.name}" takes exactly one payload argument`);
    return definedTask(task, args[0], defaults, maxPayloadBytes);
  }
  if (task !== null && typeof task === 'object') {
    const run = readField(task, 'run');
    if (typeof run === 'function') {
      if (args.length > 0)
        throw new TypeError(
          'add(): an object-form task takes no arguments; pass them through run()',
        );
      return objectTask(task as TaskObject, run as TaskObject['run'], defaults);
    }
  }
  throw new TypeError(
    `add(): expected a function, a { name, run } object or a defined task, got ${show(task)}`,
  );
}

function objectTask(task: TaskObject, run: TaskObject['run'], defaults: ResolvedPolicy): Task {
  const name = readField(task, 'name');
  if (name !== undefined && (typeof name !== 'string' || name === '')) {
    throw new TypeError(`add(): task name must be a non-empty string, got ${show(name)}`);
  }
  const given: TaskPolicy = {
    timeoutMs: readField(task, 'timeoutMs') as number | undefined,
    retries: readField(task, 'retries') as number | undefined,
    retryDelayMs: readField(task, 'retryDelayMs') as number | undefined,
  };
  const hasPolicy =
    given.timeoutMs !== undefined ||
    given.retries !== undefined ||
    given.retryDelayMs !== undefined;
  const policy = hasPolicy ? resolvePolicy('add', given, defaults) : defaults;
  const shown = name === undefined ? nameOf(readField(run, 'name')) : clip(name, MAX_NAME_CHARS);
  return new Task(shown, policy, run as (...args: unknown[]) => unknown, [], task, undefined);
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
    run as (...args: unknown[]) => unknown,
    [copy],
    { name, run },
    definition,
  );
}

/** A function's name as a task name: `anonymous` when it has none, clipped when it is long. */
function nameOf(name: unknown): string {
  return typeof name === 'string' && name !== '' ? clip(name, MAX_NAME_CHARS) : 'anonymous';
}

/** Reads `task[field]` once; a getter or proxy trap that throws gives a TypeError naming the field. */
function readField(task: object, field: string): unknown {
  try {
    return (task as Record<string, unknown>)[field];
  } catch (error) {
    throw new TypeError(`add(): reading the task's "${field}" threw (the error is the cause)`, {
      cause: error,
    });
  }
}

/** Whether `task` is a defined task; a proxy whose trap throws gives a TypeError saying so. */
function readDefined(task: unknown): task is DefinedTask<unknown> {
  try {
    return isDefinedTask(task);
  } catch (error) {
    throw new TypeError('add(): reading the task threw (the error is the cause)', {
      cause: error,
    });
  }
}
