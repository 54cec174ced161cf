/**
 * One attempt of a defined task on a worker, whatever the engine (BullMQ, pg-boss): the tasks a
 * worker runs, by name; the job seen as the observer follows it (its attempt, the request that
 * queued it, the trace context it carries); and the handler settled with its timeout and the
 * engine's cancel, as the in-process runner settles a task. The engines decide the retries.
 */
import { AttemptContext, TaskAbandonedError, timeoutError } from './attempt';
import type { Attempting, RequestSource } from './attempting';
import { isDefinedTask, type DefinedTask } from './define-task';
import { BACKGROUND_TASKS_DEFAULTS, fail, resolvePolicy } from './options';
import { contextFromCarrier, runInSpan } from './telemetry';
import { MAX_NAME_CHARS, clip, readProperty, settle, toError } from './thrown';
import type { TaskRequest } from './types';

/** Any defined task, whatever its payload type. */
// A handler's payload parameter makes DefinedTask contravariant: only `never` accepts them all.
export type AnyDefinedTask = DefinedTask<never>;

/** A defined task as a worker runs it: its handler and the timeout settled at start. */
export interface Runnable {
  readonly definition: AnyDefinedTask;
  readonly timeoutMs: number;
}

/** What a worker knows of a job when an attempt starts. */
export interface JobView {
  /** The task's name: the BullMQ job's name, or the `task` of a pg-boss job's data. */
  readonly task: string;
  readonly jobId: string;
  /** The number of this attempt, by the engine's count of starts. */
  readonly attempt: number;
  /** The job's data: `{ payload, request, trace? }`, as the web side wrote it (or anything else). */
  readonly data: unknown;
}

/** How an attempt failed. */
export interface AttemptFailure {
  readonly error: Error;
  readonly timedOut: boolean;
}

/**
 * The tasks a worker runs, by name, each with its timeout (the definition's, else `timeoutMs`).
 * Throws a TypeError for an empty list, something that is not a defined task, or a name twice.
 */
export function tasksByName(
  where: string,
  tasks: unknown,
  timeoutMs: number,
): Map<string, Runnable> {
  if (!Array.isArray(tasks) || tasks.length === 0)
    fail(where, 'tasks', 'a non-empty array of defineTask() tasks', tasks);
  const byName = new Map<string, Runnable>();
  for (const definition of tasks) {
    if (!isDefinedTask(definition))
      fail(where, 'tasks', 'an array of defineTask() tasks only', definition);
    if (byName.has(definition.name)) {
      throw new TypeError(
        `${where}(): two tasks are named "${definition.name}"; task names must be unique`,
      );
    }
    const policy = resolvePolicy(where, definition.options, {
      ...BACKGROUND_TASKS_DEFAULTS,
      timeoutMs,
    });
    byName.set(definition.name, {
      definition: definition as AnyDefinedTask,
      timeoutMs: policy.timeoutMs,
    });
  }
  return byName;
}

/**
 * Why a job's data is not what the web side writes (`{ payload, request, trace? }`), or undefined
 * when it is. `payload` may be missing: JSON leaves out an `undefined` payload.
 */
export function unreadableReason(data: unknown): string | undefined {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    const got = data === null ? 'null' : Array.isArray(data) ? 'an array' : typeof data;
    return `its data is not an object (got ${got})`;
  }
  const request = readProperty(data, 'request');
  if (request === null || typeof request !== 'object') return 'its data has no request';
  for (const [key, type] of REQUEST_FIELDS) {
    if (typeof readProperty(request, key) !== type)
      return `its data's request.${key} is not a ${type}`;
  }
  return undefined;
}

/** The message of a job a worker fails without running it (`reason`: `unreadableReason()`'s, say). */
export function cannotRunMessage(jobId: string | undefined, reason: string): string {
  return `job ${jobId} cannot be run: ${reason}`;
}

/** The message of a job whose task this worker does not run. */
export function unknownTaskMessage(name: string, tasks: ReadonlyMap<string, Runnable>): string {
  return `no task named "${name}" is defined in this worker (it runs: ${[...tasks.keys()].join(', ')})`;
}

/** A job as the observer follows it: its attempt, under the trace context the job carries, and its request. */
export function jobAttempt(job: JobView): { subject: Attempting; source: RequestSource } {
  const request = requestOf(job);
  const subject: Attempting = {
    // Job names reach log lines, span names and metric attributes: a foreign producer's are clipped.
    name: typeof job.task === 'string' ? clip(job.task, MAX_NAME_CHARS) : '(no name)',
    attempt: job.attempt,
    startedAt: 0,
    span: undefined,
    parentContext: contextFromCarrier(readProperty(job.data, 'trace')),
    jobId: job.jobId,
  };
  return { subject, source: { requestId: request.id, describeRequest: () => request } };
}

/**
 * Runs the task's handler for an attempt the observer was told of: resolves with undefined when it
 * succeeded, or with how it failed (a throw, a rejection, the timeout, or the engine's cancel).
 */
export async function runHandler(
  task: Runnable,
  subject: Attempting,
  source: RequestSource,
  cancelled: AbortSignal | undefined,
  data: unknown,
): Promise<AttemptFailure | undefined> {
  const ctx = new AttemptContext(subject.attempt, source.describeRequest());
  const timedOut = task.timeoutMs > 0 ? timeoutError(task.timeoutMs) : undefined;
  const payload = readProperty(data, 'payload') as never;
  const call = () => task.definition.handler(payload, ctx);
  const { span } = subject;
  try {
    await settleFirst(
      span === undefined ? call : () => runInSpan(span, subject.parentContext, call, undefined),
      ctx,
      task.timeoutMs,
      timedOut,
      cancelled,
    );
    return undefined;
  } catch (thrown) {
    return { error: toError(thrown), timedOut: thrown === timedOut };
  }
}

/**
 * Runs the handler and settles with the first of: its result, the timeout, or the engine
 * cancelling the job. On a timeout or a cancel `ctx.signal` is aborted and the handler's promise
 * is left behind, as in the in-process runner: the job's slot is freed whether or not the task stops.
 */
function settleFirst(
  call: () => unknown,
  ctx: AttemptContext,
  timeoutMs: number,
  timedOut: Error | undefined,
  cancelled: AbortSignal | undefined,
): Promise<unknown> {
  let result: Promise<unknown>;
  try {
    // A task may return any thenable: settle() adopts it without trusting its `then`.
    result = settle(call());
  } catch (thrown) {
    result = Promise.reject(thrown);
  }
  if (timedOut === undefined && cancelled === undefined) return result;
  let timer: NodeJS.Timeout | undefined;
  let onCancel: (() => void) | undefined;
  const cut = new Promise<never>((_resolve, reject) => {
    const stop = (reason: Error) => {
      ctx.abort(reason);
      reject(reason);
    };
    if (timedOut !== undefined) timer = setTimeout(stop, timeoutMs, timedOut);
    if (cancelled !== undefined) {
      onCancel = () =>
        stop(
          cancelled.reason instanceof Error
            ? cancelled.reason
            : new TaskAbandonedError(`job cancelled: ${String(cancelled.reason)}`),
        );
      if (cancelled.aborted) onCancel();
      else cancelled.addEventListener('abort', onCancel, { once: true });
    }
  });
  return Promise.race([result, cut]).finally(() => {
    clearTimeout(timer);
    if (onCancel !== undefined) cancelled!.removeEventListener('abort', onCancel);
  });
}

/**
 * The request that queued the job, from its data, its strings clipped for the log lines; a job
 * added by other code gets a stand-in.
 */
function requestOf(job: JobView): TaskRequest {
  const given = readProperty(job.data, 'request');
  const field = <T>(key: keyof TaskRequest, type: string, fallback: T): T => {
    const value = readProperty(given, key);
    return typeof value === type ? (value as T) : fallback;
  };
  return {
    id: clip(field('id', 'string', `job-${job.jobId}`), MAX_NAME_CHARS),
    method: clip(field('method', 'string', ''), MAX_NAME_CHARS),
    url: clip(field('url', 'string', '')),
    statusCode: field('statusCode', 'number', 0),
    aborted: field('aborted', 'boolean', false),
  };
}

/** The fields of the `request` a web side writes in a job's data, and their types. */
const REQUEST_FIELDS: ReadonlyArray<[keyof TaskRequest, string]> = [
  ['id', 'string'],
  ['method', 'string'],
  ['url', 'string'],
  ['statusCode', 'number'],
  ['aborted', 'boolean'],
];
