/**
 * Makes sense of untrusted values: anything can be thrown, an Error's `message` or `stack` may be
 * a getter that throws, and a returned promise may have its own `then` or `constructor`.
 */
import { inspect } from 'node:util';

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

/** Copies an error's name, message and (optionally) stack into plain strings. */
export function errorFields(error: Error, withStack = true): ErrorFields {
  const fields: ErrorFields = {
    name: readString(error, 'name') ?? 'Error',
    message: readString(error, 'message') ?? '(unreadable message)',
  };
  if (withStack) {
    const stack = readString(error, 'stack');
    if (stack !== undefined) fields.stack = stack;
  }
  return fields;
}

/**
 * A native promise that settles as `value` does, and never throws. `await` adopts a native
 * promise through its internal state, ignoring an own `then`, so a rejection always gets a
 * handler; a throwing `then` or `constructor` getter becomes a rejection.
 */
export async function settle(value: unknown): Promise<unknown> {
  return await value;
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
