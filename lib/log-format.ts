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

/** A value winston may hand on as a record: any object (a format may return anything). */
export function isRecord(value: unknown): value is Info {
  return typeof value === 'object' && value !== null;
}

export const LEVEL = Symbol.for('level');
export const MESSAGE = Symbol.for('message');

/**
 * The record `logger.log(level, message, fields)` makes, before its format (winston's own merge
 * with `defaultMeta`), or the minimal record when reading `defaultMeta` throws (a getter that
 * reads a request's async context, outside it).
 */
export function recordOf(
  logger: { defaultMeta?: unknown },
  level: string,
  message: string,
  fields: object,
): { info: Info } | { minimal: string } {
  const info: Info = { [LEVEL]: level, level, message };
  try {
    return { info: Object.assign({}, logger.defaultMeta, fields, info) };
  } catch {
    return { minimal: minimalLine(Object.assign({}, fields, info)) };
  }
}

/** What a format made of a record: the record, or that it filtered it out, or that it threw. */
export type Formatted = { info: Info } | 'filtered' | 'threw';

/** Applies `format` to a copy of `info`, as winston-transport does before `log()`. */
export function applyFormat(info: Info, format: Format | undefined): Formatted {
  if (format === undefined) return { info };
  let out: Info | boolean;
  try {
    out = format.transform(Object.assign({}, info), format.options);
  } catch {
    return 'threw';
  }
  // A format filters a record by returning false (or, by mistake, any other non-object).
  return out !== null && typeof out === 'object' ? { info: out } : 'filtered';
}

/**
 * The line that `format` makes of `info`; undefined when it filters the record out (as a level
 * filter does: then nothing is written, as winston would write nothing); the minimal line when
 * it throws.
 */
export function formatLine(info: Info, format: Format | undefined): string | undefined {
  const formatted = applyFormat(info, format);
  if (formatted === 'threw') return minimalLine(info);
  return formatted === 'filtered' ? undefined : lineOf(formatted.info);
}

/** A line of the library's own about a logger (a notice, a count of dropped records): JSON, at `error`. */
export function noticeLine(message: string, fields: object): string {
  return JSON.stringify({ level: 'error', message, ...fields });
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
