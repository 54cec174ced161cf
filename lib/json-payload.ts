/**
 * The JSON copy of a defined task's payload, taken at `add()`: one walk that reads each value
 * once, refuses what would not come back from JSON unchanged (saying where), holds the payload
 * to a size limit, and builds the copy from the values it read, so that the value checked is
 * the value sent.
 */

const MAX_DEPTH = 100;
const MAX_ARRAY_LENGTH = 2 ** 32 - 1;
/** Any character that JSON escapes or UTF-8 writes in more than one byte. */
const NOT_PLAIN = /[^\x20\x21\x23-\x5b\x5d-\x7f]/;
/** Any character whose JSON is longer than its UTF-8: escaped ones, and surrogates (lone ones are). */
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const NOT_AS_UTF8 = /["\\\x00-\x1f\ud800-\udfff]/;
/** The characters JSON escapes. */
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const ESCAPED = /["\\\x00-\x1f]/;

/**
 * Copies `payload` as `JSON.parse(JSON.stringify(payload))` would, or throws a TypeError that
 * names the first part that would not survive JSON unchanged, e.g.
 * `add(): the payload of task "mail" does not survive JSON: payload.to[3].name is a function`.
 *
 * Accepted: strings, booleans, null, finite numbers (-0 becomes 0), plain arrays, and plain
 * objects (prototype `Object.prototype` or null) without symbol keys, nested at most 100
 * levels. An object's own enumerable string keys are copied in their order; those whose value
 * is `undefined` are left out, as JSON leaves them out; an own `__proto__` key stays an own
 * key. A top-level `undefined` gives `undefined`.
 *
 * Refused: functions, symbols, BigInts, NaN and ±Infinity, cycles, class instances (Date, Map,
 * Buffer, ...), arrays whose prototype is not `Array.prototype` (a subclass's `toJSON` would
 * make JSON's copy differ), holes and `undefined` items in arrays, deeper nesting, and any
 * getter or proxy trap that throws: that error becomes the TypeError's `cause`.
 *
 * An array is read as JSON reads it: its `length`, then each index once. Its other own
 * properties, named or symbol, are neither read nor copied, as JSON ignores them; finding them
 * would mean listing every key of the array, which for a large array costs more than the rest
 * of the walk.
 *
 * `maxBytes` bounds the UTF-8 size of the payload's JSON (`Infinity`: no limit, and nothing is
 * measured). With a limit, the walk adds up the size as it goes (an array's brackets and commas
 * as soon as its length is known) and refuses as soon as the sum is over, so a huge payload is
 * refused long before it is all read.
 */
export function copyPayload(task: string, payload: unknown, maxBytes: number): unknown {
  const walk = new Walk(maxBytes);
  try {
    return walk.value(payload, 0);
  } catch (error) {
    throw walk.typeError(task, error);
  }
}

interface Refusal {
  reason: string;
  /** Keys from the refused part up to the payload, filled in as the walk unwinds. */
  keys: (string | number)[];
  tooLarge: boolean;
  thrown?: { error: unknown };
}

class Walk {
  /** Bytes of JSON counted so far, when there is a limit. */
  private bytes = 0;
  private readonly measured: boolean;
  /** The containers from the payload down to the one being walked, for cycles (as JSON does). */
  private readonly ancestors: object[] = [];
  /** Compared by identity in the catch blocks: a thrown user value never runs code there. */
  private refusal: Refusal | undefined;

  constructor(private readonly maxBytes: number) {
    this.measured = maxBytes !== Infinity;
  }

  value(value: unknown, depth: number): unknown {
    switch (typeof value) {
      case 'number':
        if (!Number.isFinite(value)) throw this.refuse(`is ${value}`);
        if (this.measured) this.count(numberBytes(value));
        return value === 0 ? 0 : value; // JSON writes -0 as 0
      case 'string':
        if (this.measured) this.countString(value, 0);
        return value;
      case 'boolean':
        this.count(value ? 4 : 5);
        return value;
      case 'undefined':
        return value;
      case 'object':
        if (value === null) {
          this.count(4);
          return value;
        }
        this.enter(value, depth);
        return Array.isArray(value) ? this.array(value, depth) : this.object(value, depth);
      default:
        throw this.refuse(`is a ${typeof value}`);
    }
  }

  typeError(task: string, error: unknown): TypeError {
    const refusal = this.refusalFor(error);
    const subject = `add(): the payload of task "${task}"`;
    if (refusal.tooLarge) return new TypeError(`${subject} ${refusal.reason}`);
    let path = 'payload';
    for (let i = refusal.keys.length - 1; i >= 0; i--) path += pathStep(refusal.keys[i]);
    const message = `${subject} does not survive JSON: ${path} ${refusal.reason}`;
    return refusal.thrown === undefined
      ? new TypeError(message)
      : new TypeError(`${message} (the error is the cause)`, { cause: refusal.thrown.error });
  }

  private enter(value: object, depth: number): void {
    if (depth >= MAX_DEPTH) throw this.refuse(`is nested more than ${MAX_DEPTH} levels deep`);
    for (let d = 0; d < depth; d++)
      if (this.ancestors[d] === value) throw this.refuse('is a cycle');
    this.ancestors[depth] = value;
  }

  private array(value: unknown[], depth: number): unknown[] {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Array.prototype) throw this.refuse(`is a ${className(proto)}, not a plain array`);
    if (hasToJSON(value, proto)) throw this.refuse(TO_JSON);
    const length = value.length;
    // Only a proxy can answer a length that no array has.
    if (!Number.isInteger(length) || length < 0 || length > MAX_ARRAY_LENGTH)
      throw this.refuse('has an invalid length');
    // The brackets and commas, counted at once: a huge array is refused before it is read.
    this.count(length === 0 ? 2 : length + 1);
    const copy: unknown[] = new Array(length);
    let i = 0;
    try {
      for (; i < length; i++) {
        const item = value[i];
        if (item === undefined) throw this.refuse(i in value ? 'is undefined' : 'is a hole');
        copy[i] = this.value(item, depth + 1);
      }
    } catch (error) {
      throw this.at(error, i);
    }
    return copy;
  }

  private object(value: object, depth: number): Record<string, unknown> {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null)
      throw this.refuse(`is a ${className(proto)}, not a plain object`);
    if (hasToJSON(value, proto)) throw this.refuse(TO_JSON);
    if (Object.getOwnPropertySymbols(value).length > 0) throw this.refuse('has symbol keys');
    const keys = Object.keys(value);
    const copy: Record<string, unknown> = {};
    let members = 0;
    let i = 0;
    try {
      for (; i < keys.length; i++) {
        const key = keys[i];
        const item = (value as Record<string, unknown>)[key];
        if (item === undefined) continue;
        // The quoted key, its colon, and the comma or brace after the member.
        if (this.measured) this.countString(key, 2);
        const itemCopy = this.value(item, depth + 1);
        // Assigning `__proto__` would set the copy's prototype; JSON.parse makes an own key.
        if (key === '__proto__') Object.defineProperty(copy, key, ownData(itemCopy));
        else copy[key] = itemCopy;
        members++;
      }
    } catch (error) {
      throw this.at(error, keys[i]);
    }
    this.count(members === 0 ? 2 : 1);
    return copy;
  }

  /**
   * Counts a string's JSON (and `extra` bytes around it) without building it again. Each UTF-16
   * unit is at least one byte, so a string longer than what is left of the limit is refused at
   * once, before anything else is done with it; a shorter one is counted up to the limit.
   */
  private countString(text: string, extra: number): void {
    const left = this.maxBytes - this.bytes - extra;
    this.count(extra + (text.length + 2 > left ? text.length + 2 : stringBytes(text, left)));
  }

  private count(bytes: number): void {
    this.bytes += bytes;
    if (this.bytes > this.maxBytes) {
      const refusal = this.refuse(
        `is too large: its JSON is at least ${this.bytes} bytes, more than maxPayloadBytes (${this.maxBytes})`,
      );
      refusal.tooLarge = true;
      throw refusal;
    }
  }

  /** The refusal of the part at `key`, for a throw from reading it or from the walk below it. */
  private at(error: unknown, key: string | number): Refusal {
    const refusal = this.refusalFor(error);
    refusal.keys.push(key);
    return refusal;
  }

  /** Ours if the walk threw it; otherwise a getter or proxy trap threw `error` where the walk was. */
  private refusalFor(error: unknown): Refusal {
    // `undefined` can be thrown too, before the walk has refused anything.
    return error === this.refusal && error !== undefined
      ? (error as Refusal)
      : this.refuse('threw when read', { error });
  }

  private refuse(reason: string, thrown?: { error: unknown }): Refusal {
    return (this.refusal = { reason, keys: [], tooLarge: false, thrown });
  }
}

const TO_JSON = 'has a toJSON method, which JSON would call instead';

/**
 * JSON.stringify sends what a `toJSON` method returns, own (enumerable or not, or behind a
 * getter) or inherited: then the copy would not be what JSON sends. Read without running a getter.
 */
function hasToJSON(value: object, proto: unknown): boolean {
  const own = Object.getOwnPropertyDescriptor(value, 'toJSON');
  if (own !== undefined) return typeof own.value === 'function' || own.get !== undefined;
  return proto !== null && typeof (proto as { toJSON?: unknown }).toJSON === 'function';
}

function pathStep(key: string | number): string {
  if (typeof key === 'number') return `[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** The name a refused prototype goes by; reading it may run a getter, so a throw is not fatal. */
function className(proto: unknown): string {
  try {
    const name: unknown = (proto as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    if (typeof name === 'string' && name !== '') return name;
  } catch {
    // Fall through to the generic name.
  }
  return 'class instance';
}

/** The UTF-8 bytes of a number's JSON; integers are counted without writing them out. */
function numberBytes(n: number): number {
  if (!Number.isInteger(n) || Math.abs(n) >= 1e21) return String(n).length;
  let bytes = n < 0 ? 2 : 1;
  // Powers of ten up to 1e21 are exact doubles, so the comparisons are exact.
  for (let power = 10, abs = Math.abs(n); power <= abs; power *= 10) bytes++;
  return bytes;
}

/**
 * The UTF-8 bytes of a string's JSON, quotes included, as JSON.stringify writes it: `"` and `\`
 * as two bytes, `\b \f \n \r \t` as two, other control characters as six (`\u0001`), a lone
 * surrogate as six (`\ud800`), the rest as UTF-8. Past `limit` it stops, with a count above it.
 * Native passes first (Buffer.byteLength, isWellFormed, a search); a loop in JS only from the
 * first character that UTF-8 and JSON count differently.
 */
function stringBytes(text: string, limit: number): number {
  if (!NOT_PLAIN.test(text)) return text.length + 2;
  // UTF-8 writes a lone surrogate as U+FFFD (3 bytes) and an escaped character as itself (1).
  const bytes = Buffer.byteLength(text) + 2;
  if (bytes > limit) return bytes;
  // ES2024, in every supported Node (20 has it): no lone surrogate.
  const wellFormed = (text as unknown as WellFormedTest).isWellFormed();
  const from = text.search(wellFormed ? ESCAPED : NOT_AS_UTF8);
  return from === -1 ? bytes : countFrom(text, from, bytes, limit, wellFormed);
}

/** Adds to `bytes` (the UTF-8 count) what JSON writes more, from `from` on, stopping past `limit`. */
function countFrom(
  text: string,
  from: number,
  bytes: number,
  limit: number,
  wellFormed: boolean,
): number {
  for (let i = from; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x20) bytes += (SHORT_ESCAPES >>> unit) & 1 ? 1 : 5;
    else if (unit === 0x22 || unit === 0x5c) bytes++;
    else if (!wellFormed && unit >= 0xd800 && unit <= 0xdfff) {
      const next = unit <= 0xdbff ? text.charCodeAt(i + 1) : NaN;
      if (next >= 0xdc00 && next <= 0xdfff)
        i++; // a pair: four bytes either way
      else bytes += 3;
    } else continue;
    if (bytes > limit) return bytes;
  }
  return bytes;
}

/** `String.prototype.isWellFormed`, which TypeScript's ES2022 library does not declare. */
interface WellFormedTest {
  isWellFormed(): boolean;
}

/** `\b \t \n \f \r` (8, 9, 10, 12, 13) as bits: the control characters JSON escapes in two bytes. */
const SHORT_ESCAPES = 0x3700;

function ownData(value: unknown): PropertyDescriptor {
  return { value, writable: true, enumerable: true, configurable: true };
}
