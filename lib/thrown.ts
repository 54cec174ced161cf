/**
 * Makes sense of untrusted values: anything can be thrown, an Error's `message` or `stack` may be
 * a getter that throws, and a returned promise may have its own `then` or `constructor`.
 */
import { inspect, types } from 'node:util';
import { swallowRejectionOf } from './unobservable-promises';

const { isPromise } = types;

/** The fields a log record carries for an error (winston would serialise a nested Error as `{}`). */
export interface ErrorFields {
  name: string;
  message: string;
  stack?: string;
}

const MAX_SHOWN = 1_000;

/** Returns `value` when it is an Error, else an Error whose message shows the value. */
export function toError(value: unknown): Error {
  if (isError(value)) return value;
  const error = new Error(`non-error value thrown: ${showValue(value)}`);
  error.name = 'NonErrorThrown';
  return error;
}

/**
 * The most characters of an error's name, message or stack that a log record carries. A stack
 * starts with the message, so a 10 MB message would otherwise make a 20 MB line.
 */
export const MAX_LOGGED_CHARS = 8_192;

/**
 * The most characters of a name or id given by users (a task name, a request id, a job name)
 * that a log line, a span or a metric attribute carries: longer ones are cut by `clip()`.
 */
export const MAX_NAME_CHARS = 256;

/**
 * `text` cut to `maxChars` (default `MAX_LOGGED_CHARS`), ending with a marker that says how long
 * it was: `… [cut: N characters in all]`. Never cuts a surrogate pair in half.
 */
export function clip(text: string, maxChars: number = MAX_LOGGED_CHARS): string {
  if (text.length <= maxChars) return text;
  let end = maxChars;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}… [cut: ${text.length} characters in all]`;
}

/** Copies an error's name, message and (optionally) stack into plain strings, each cut to `MAX_LOGGED_CHARS`. */
export function errorFields(error: Error, withStack = true): ErrorFields {
  const fields: ErrorFields = {
    name: clip(readString(error, 'name') ?? 'Error'),
    message: clip(readString(error, 'message') ?? '(unreadable message)'),
  };
  if (withStack) {
    const stack = readString(error, 'stack');
    if (stack !== undefined) fields.stack = clip(stack);
  }
  return fields;
}

/**
 * A native promise that settles as `value` does, and never throws nor lets a rejection loose.
 *
 * A native promise is settled through the intrinsic `Promise.prototype.then`, never through its
 * own `then` nor through `await`. Its `constructor` and that constructor's `Symbol.species` are
 * still read by that `then` (and by `await`): when they throw, no handler can be attached at
 * all, so the result is a rejection with a TypeError that says so (the error as its cause), and
 * the promise's own rejection, if it comes, is swallowed (see unobservable-promises.ts). Any
 * other thenable is adopted by `await`, which calls its `then` once in a later job: a throwing
 * `then` or `then` getter becomes a rejection, and a call back after the first is ignored.
 *
 * An ordinary promise (native, not a proxy, of this realm, with the intrinsic prototype and no
 * own `then` or `constructor`) is returned as it is: nothing in it can run user code, and it
 * spares the async function's frame and extra turns, held as long as the task runs (1,304 B and
 * 385 ns per async task before, 900 B and 273 ns after: `bench/queue-throughput.ts`).
 */
export function settle(value: unknown): Promise<unknown> {
  if (isOrdinaryPromise(value)) return value;
  return isPromise(value) ? throughIntrinsicThen(value) : adopt(value);
}

/** True for a native promise, or anything else with a callable `then`: what `settle()` settles. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    (isPromise(value) || typeof (value as { then?: unknown }).then === 'function')
  );
}

/** Reads a property of an untrusted value; a throwing getter or proxy trap yields `undefined`. */
export function readProperty(value: unknown, key: PropertyKey): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function'))
    return undefined;
  try {
    return (value as Record<PropertyKey, unknown>)[key];
  } catch {
    return undefined;
  }
}

function readString(value: unknown, key: string): string | undefined {
  const read = readProperty(value, key);
  return typeof read === 'string' ? read : undefined;
}

/** No step of this runs user code: `isPromise` is false for a proxy, and a promise is an ordinary object. */
function isOrdinaryPromise(value: unknown): value is Promise<unknown> {
  return (
    isPromise(value) &&
    Object.getPrototypeOf(value) === Promise.prototype &&
    Promise.prototype.then === INTRINSIC_THEN &&
    !Object.hasOwn(value, 'then') &&
    !Object.hasOwn(value, 'constructor')
  );
}

const INTRINSIC_THEN = Promise.prototype.then;

/** Settles a native promise that may have an own `then`, `constructor` or another prototype. */
function throughIntrinsicThen(promise: Promise<unknown>): Promise<unknown> {
  return new Promise((resolve, reject) => {
    try {
      INTRINSIC_THEN.call(promise, resolve, reject);
    } catch (thrown) {
      swallowRejectionOf(promise);
      reject(
        new TypeError(
          'the promise returned cannot be settled: reading its constructor or Symbol.species threw (the error is the cause)',
          { cause: thrown },
        ),
      );
    }
  });
}

async function adopt(value: unknown): Promise<unknown> {
  return await value;
}

function isError(value: unknown): value is Error {
  try {
    return value instanceof Error;
  } catch {
    return false;
  }
}

function showValue(value: unknown): string {
  let shown: string;
  try {
    shown = inspect(value, {
      depth: 2,
      breakLength: Infinity,
      maxArrayLength: 10,
      maxStringLength: MAX_SHOWN,
    });
  } catch {
    shown = Object.prototype.toString.call(value);
  }
  return shown.length > MAX_SHOWN ? `${shown.slice(0, MAX_SHOWN)}…` : shown;
}
