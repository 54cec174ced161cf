/**
 * One queued task: what `add()` was given, normalised into a single shape the runner can call,
 * with its name and policy settled at the call site so that a bad task fails there.
 */
import type { Context, Span } from '@opentelemetry/api';
import type { Attempting } from './observer';
import { resolvePolicy, show, type ResolvedPolicy } from './options';
import type { TaskContext, TaskObject } from './types';
import { isDefinedTask, type DefinedTask } from './define-task';

export class Task implements Attempting {
  /** Attempts made so far: the number of the one running, while one runs. */
  attempt = 0;
  startedAt = 0;
  span: Span | undefined = undefined;
  /** The context active at `add()`, set by the runner when it takes the task. */
  parentContext: Context | undefined = undefined;

  constructor(
    readonly name: string,
    readonly policy: ResolvedPolicy,
    /** The plain-function form: called with `args`. */
    readonly fn: ((...args: unknown[]) => unknown) | undefined,
    readonly args: unknown[],
    /** The object form: `run(ctx)` is called as a method. */
    readonly object: TaskObject | undefined,
    /** Set for a `defineTask` task, so that a durable queue can take it instead. */
    readonly definition: DefinedTask<unknown> | undefined,
  ) {}

  invoke(ctx: TaskContext | undefined): unknown {
    return this.object === undefined ? this.fn!(...this.args) : this.object.run(ctx!);
  }
}

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
    return task.toTask(args[0], defaults, maxPayloadBytes);
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
