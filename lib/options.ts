/**
 * The options of `backgroundTasks()`, each documented with its default, and the checks that
 * reject a bad option when the middleware is created rather than when the first task runs.
 */
import type { Logger } from 'winston';
import type { DurableQueue } from './durable';
import type { TaskFailure, TaskPolicy } from './types';

export interface BackgroundTasksOptions extends TaskPolicy {
  /** Where failures, retries, rejections and abandoned tasks are logged. Default: JSON lines on the console. */
  logger?: Logger;
  /** Run the tasks of a request whose client went away before the response finished. Default: `true`. */
  runOnAbort?: boolean;
  /** Called once per task that ended failed or timed out, after it was logged. A throw here is caught and logged. */
  onTaskError?: (failure: TaskFailure) => unknown;
  /**
   * Milliseconds a task may run before its `ctx.signal` is aborted, it is logged as timed out, and the
   * request's queue moves on (the task's promise is abandoned, not awaited). `0`: no limit. Default: `30000`.
   */
  timeoutMs?: number;
  /** Attempts after the first, when a task throws, rejects or times out. Default: `0`. */
  retries?: number;
  /**
   * Base of the backoff before a retry: attempt n waits between half and all of
   * `retryDelayMs * 2 ** (n - 1)`. Default: `100`.
   */
  retryDelayMs?: number;
  /** The most tasks running at once across all requests of this middleware (`Infinity`: no limit). Default: `16`. */
  concurrency?: number;
  /** The most tasks pending at once; a task beyond it is rejected and logged, and `add` does not throw. Default: `10000`. */
  maxPending?: number;
  /** A durable queue (e.g. `bullmqDurable(...)`) for tasks made with `defineTask`. Default: none, all tasks run here. */
  durable?: DurableQueue;
  /**
   * The largest payload of a `defineTask` task, in UTF-8 bytes of its JSON: `add()` throws a
   * TypeError for a larger one, before it is all read. A definition may set its own. `Infinity`:
   * no limit. Default: `1048576` (1 MiB).
   */
  maxPayloadBytes?: number;
}

/** `BackgroundTasksOptions` with every default filled in. */
export interface ResolvedOptions {
  readonly logger: Logger | undefined;
  readonly runOnAbort: boolean;
  readonly onTaskError: ((failure: TaskFailure) => unknown) | undefined;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly retryDelayMs: number;
  readonly concurrency: number;
  readonly maxPending: number;
  readonly durable: DurableQueue | undefined;
  readonly maxPayloadBytes: number;
}

/** The defaults of `backgroundTasks()`'s options, for reference. */
export const BACKGROUND_TASKS_DEFAULTS = Object.freeze({
  runOnAbort: true,
  timeoutMs: 30_000,
  retries: 0,
  retryDelayMs: 100,
  concurrency: 16,
  maxPending: 10_000,
  maxPayloadBytes: 1_048_576,
});

/** The longest delay `setTimeout` honours; a larger one fires at once. */
export const MAX_TIMER_MS = 2_147_483_647;
const MAX_RETRIES = 100;

export function resolveOptions(options: BackgroundTasksOptions | undefined): ResolvedOptions {
  const given = checkOptionsObject('backgroundTasks', options, [
    'logger',
    'runOnAbort',
    'onTaskError',
    'timeoutMs',
    'retries',
    'retryDelayMs',
    'concurrency',
    'maxPending',
    'durable',
    'maxPayloadBytes',
  ]);
  if (given.runOnAbort !== undefined && typeof given.runOnAbort !== 'boolean') {
    fail('backgroundTasks', 'runOnAbort', 'a boolean', given.runOnAbort);
  }
  if (given.onTaskError !== undefined)
    checkFunction('backgroundTasks', 'onTaskError', given.onTaskError);
  if (given.durable !== undefined) checkDurable(given.durable);
  const policy = resolvePolicy('backgroundTasks', given, DEFAULT_POLICY);
  return {
    logger: given.logger,
    runOnAbort: given.runOnAbort ?? BACKGROUND_TASKS_DEFAULTS.runOnAbort,
    onTaskError: given.onTaskError,
    ...policy,
    concurrency: checkCount(
      'backgroundTasks',
      'concurrency',
      given.concurrency,
      BACKGROUND_TASKS_DEFAULTS.concurrency,
      1,
    ),
    maxPending: checkCount(
      'backgroundTasks',
      'maxPending',
      given.maxPending,
      BACKGROUND_TASKS_DEFAULTS.maxPending,
      0,
    ),
    durable: given.durable,
    maxPayloadBytes: checkMaxPayloadBytes(
      'backgroundTasks',
      given.maxPayloadBytes,
      BACKGROUND_TASKS_DEFAULTS.maxPayloadBytes,
    ),
  };
}

/** A payload limit: a positive integer of bytes, or `Infinity`. */
export function checkMaxPayloadBytes(where: string, value: unknown, fallback: number): number {
  return checkCount(where, 'maxPayloadBytes', value, fallback, 1);
}

export type ResolvedPolicy = Required<TaskPolicy>;

const { timeoutMs, retries, retryDelayMs } = BACKGROUND_TASKS_DEFAULTS;
const DEFAULT_POLICY: ResolvedPolicy = { timeoutMs, retries, retryDelayMs };

/** Fills a task's (or the middleware's) policy from `defaults`, checking each given field. */
export function resolvePolicy(
  where: string,
  given: TaskPolicy,
  defaults: ResolvedPolicy,
): ResolvedPolicy {
  return {
    timeoutMs: checkInteger(
      where,
      'timeoutMs',
      given.timeoutMs,
      defaults.timeoutMs,
      0,
      MAX_TIMER_MS,
    ),
    retries: checkInteger(where, 'retries', given.retries, defaults.retries, 0, MAX_RETRIES),
    retryDelayMs: checkInteger(
      where,
      'retryDelayMs',
      given.retryDelayMs,
      defaults.retryDelayMs,
      0,
      MAX_TIMER_MS,
    ),
  };
}

/** Checks that `options` is undefined or a plain object whose keys are all known, and returns it. */
export function checkOptionsObject<T extends object>(
  where: string,
  options: T | undefined,
  known: readonly string[],
): Partial<T> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${where}(): options must be an object, got ${show(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(
        `${where}(): unknown option "${key}"; known options: ${known.join(', ')}`,
      );
    }
  }
  return options;
}

export function checkLogger(where: string, logger: unknown): void {
  const methods = ['error', 'warn', 'info', 'debug', 'log'] as const;
  const valid =
    typeof logger === 'object' &&
    logger !== null &&
    methods.every((method) => typeof (logger as Record<string, unknown>)[method] === 'function');
  if (!valid) fail(where, 'logger', `a winston Logger (with ${methods.join(', ')})`, logger);
}

export function checkFunction(where: string, name: string, value: unknown): void {
  if (typeof value !== 'function') fail(where, name, 'a function', value);
}

export function checkInteger(
  where: string,
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(where, name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

export function fail(where: string, name: string, expected: string, got: unknown): never {
  throw new TypeError(`${where}(): option "${name}" must be ${expected}, got ${show(got)}`);
}

/** A short, safe rendering of any value for an error message. */
export function show(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (Array.isArray(value)) return 'an array';
  if (value !== null && typeof value === 'object') return 'an object';
  return String(value);
}

/** An integer at least `min`, or `Infinity` for no limit. */
function checkCount(
  where: string,
  name: string,
  value: unknown,
  fallback: number,
  min: number,
): number {
  if (value === Infinity) return value;
  return checkInteger(where, name, value, fallback, min, Number.MAX_SAFE_INTEGER);
}

function checkDurable(durable: unknown): void {
  const valid =
    typeof durable === 'object' &&
    durable !== null &&
    typeof (durable as { enqueue?: unknown }).enqueue === 'function';
  if (!valid)
    fail('backgroundTasks', 'durable', 'a durable queue such as bullmqDurable(...)', durable);
}
