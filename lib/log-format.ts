/**
 * What a log record looks like when it goes to stderr instead of a transport: formatted as the
 * logger, and the transport it missed, would have formatted it, so that what the app's format
 * removes (a token in a URL, say) is removed on stderr too; and, when that format throws, a
 * minimal record that carries nothing but the level, the message, the task and the request id.
 */
import { clip } from './thrown';

/** winston's record shape: fields, plus the level and the formatted line under triple-beam's symbols. */
export type Info = Record<string | symbol, unknown>;

/** A logform format, as winston's loggers and transports hold it. */
export interface Format {
  transform(info: Info, options?: unknown): Info | boolean;
  options?: unknown;
}

export const LEVEL = Symbol.for('level');
export const MESSAGE = Symbol.for('message');

/** The record `logger.log(level, message, fields)` makes, before its format (winston's own merge). */
export function recordOf(
  defaultMeta: unknown,
  level: string,
  message: string,
  fields: object,
): Info {
  return Object.assign({}, defaultMeta, fields, { [LEVEL]: level, level, message });
}

/**
 * The line that `formats`, applied in turn to a copy of `info`, make of it; undefined when one of
 * them filters it out (as a level filter does, so nothing is written, as winston would write
 * nothing); the minimal line when one throws.
 */
export function formatLine(
  info: Info,
  formats: ReadonlyArray<Format | undefined>,
): string | undefined {
  let current: Info = info;
  for (const format of formats) {
    if (format === undefined) continue;
    let out: Info | boolean;
    try {
      out = format.transform(Object.assign({}, current), format.options);
    } catch {
      return minimalLine(info);
    }
    if (out === false || out === true || out === null || typeof out !== 'object') return undefined;
    current = out;
  }
  return lineOf(current);
}

/**
 * The line of a record already formatted: the text its format made (`json()`, `printf()`,
 * `simple()` … all set it), else its fields as JSON. Newlines are escaped: one record, one line.
 */
export function lineOf(info: Info): string {
  const formatted = info[MESSAGE];
  if (typeof formatted === 'string') return formatted.replace(/\r\n|\r|\n/g, '\\n');
  try {
    const json = JSON.stringify(info);
    if (typeof json === 'string') return json;
  } catch {
    // a BigInt or a cycle among the fields: fall through to the minimal line
  }
  return minimalLine(info);
}

/**
 * The line written when a record's format throws: its level, its message, and the task and
 * request id it is about, nothing else (no URL, no error text, no other field: the format that
 * would have removed what must not be shown did not run).
 */
export function minimalLine(info: Info): string {
  const minimal: Record<string, string> = {};
  for (const key of ['level', 'message', 'task', 'requestId']) {
    const value = readField(info, key);
    if (typeof value === 'string') minimal[key] = clip(value);
  }
  return JSON.stringify(minimal);
}

function readField(info: Info, key: string): unknown {
  try {
    return info[key];
  } catch {
    return undefined;
  }
}
