/**
 * copyPayload(), the check and copy of a defined task's payload at add(), as a specification:
 * what is accepted (the copy is always JSON's round trip), what is refused and how the message
 * names the place, getters and proxies that throw or change their answer, the size limit at its
 * boundary, and a huge payload refused after reading only a small part of it.
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import request from 'supertest';
import { backgroundTasks, defineTask, type DefinedTask } from '../lib';
import { copyPayload } from '../lib/json-payload';
import { toTask } from '../lib/to-task';
import { EXPRESS_VERSIONS, makeApp } from './support/apps';

const PREFIX = 'add(): the payload of task "t" does not survive JSON: ';

/** The UTF-8 bytes of `value`'s JSON, the size that maxBytes bounds. */
const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

/** What add() gives the task, or the TypeError it throws. */
function copy(payload: unknown, maxBytes = Infinity): unknown {
  return copyPayload('t', payload, maxBytes);
}

function refusal(payload: unknown, maxBytes = Infinity): TypeError {
  try {
    copy(payload, maxBytes);
  } catch (error) {
    expect(error).toBeInstanceOf(TypeError);
    return error as TypeError;
  }
  throw new Error('expected the payload to be refused');
}

/**
 * `copied` is what JSON.parse(JSON.stringify(payload)) gives: the same values (-0 apart from 0),
 * prototypes and key order, and never `payload` itself. (Not toStrictEqual: it compares
 * `.constructor`, which an own "constructor" key makes differ between two equal copies.)
 */
function expectSameAsJson(copied: unknown, payload: unknown): void {
  const expected: unknown = JSON.parse(JSON.stringify(payload));
  expect(copied).toEqual(expected);
  expect(isDeepStrictEqual(copied, expected)).toBe(true);
  expect(JSON.stringify(copied)).toBe(JSON.stringify(expected));
  if (typeof payload === 'object' && payload !== null) expect(copied).not.toBe(payload);
}

function expectJsonRoundTrip(payload: unknown): void {
  expectSameAsJson(copy(payload), payload);
}

function nested(levels: number): unknown {
  let value: unknown = 'leaf';
  for (let i = 0; i < levels; i++) value = i % 2 === 0 ? { a: value } : [value];
  return value;
}

describe('accepted: the copy is exactly what JSON.parse(JSON.stringify(payload)) gives', () => {
  const shared = { id: 1 };
  const arrayWithExtras = Object.assign([1, 2], { extra: 'not copied', [Symbol('s')]: 1 });
  const withHidden = Object.defineProperty({ shown: 1 }, 'hidden', { value: 2, enumerable: false });
  const withGetter = Object.defineProperty({}, 'computed', { get: () => 'read', enumerable: true });
  const nullPrototype = Object.assign(Object.create(null) as object, { a: 1 });
  const objectProxy = new Proxy({ a: [1, { b: 'c' }] }, {});
  const arrayProxy = new Proxy([1, 'two', null], {});
  test.each<[string, unknown]>([
    ['a string', 'text'],
    ['zero', 0],
    ['-0, which JSON writes as 0', -0],
    ['-0 inside', { n: -0, list: [-0] }],
    ['numbers at the edges of their notation', [1e21, -1e-7, 5e-324, Number.MAX_VALUE, 0.1]],
    ['true, false and null', [true, false, null]],
    ['empty containers', { o: {}, a: [], s: '' }],
    ['undefined object values, which are left out', { a: undefined, b: 1, c: { d: undefined } }],
    ['keys in their enumeration order, integer keys first', { b: 1, 2: 'x', a: 2, 1: 'y' }],
    ['lone surrogates', ['\ud800', 'a\udc00b', '\udbff\udbff']],
    ['characters JSON escapes', '\u0000\u001f\n\t"\\\u2028\u007f'],
    ['multi-byte characters', 'é€😀 日本'],
    ['an object with a null prototype (copied with Object.prototype)', nullPrototype],
    ['one object referenced twice, not a cycle (copied twice)', { a: shared, b: [shared] }],
    ['array properties other than indices (not copied, as JSON)', { list: arrayWithExtras }],
    ['non-enumerable properties (not copied)', withHidden],
    ['a getter (its value is copied)', withGetter],
    ['a toJSON key that is not a function (a key like any other)', { toJSON: 5 }],
    ['a well-behaved proxy of an object', objectProxy],
    ['a well-behaved proxy of an array', arrayProxy],
    ['100 levels of nesting', nested(100)],
  ])('%s', (_name, payload) => {
    expectJsonRoundTrip(payload);
  });

  test('an undefined payload stays undefined', () => {
    expect(copy(undefined)).toBeUndefined();
  });

  test('an own "__proto__" key stays an own key: it never sets the prototype of the copy', () => {
    const payload: unknown = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}');
    const copied = copy(payload) as Record<string, unknown>;
    expectJsonRoundTrip(payload);
    expect(Object.getPrototypeOf(copied)).toBe(Object.prototype);
    expect(Object.keys(copied)).toEqual(['__proto__', 'a']);
    expect(Object.getOwnPropertyDescriptor(copied, '__proto__')?.value).toEqual({ polluted: true });
    expect((copied as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  test('the copy is deep: changing the payload afterwards does not change it', () => {
    const payload = { tags: ['a'], user: { name: 'Ann' } };
    const copied = copy(payload);
    payload.tags.push('b');
    payload.user.name = 'Bob';
    expect(copied).toEqual({ tags: ['a'], user: { name: 'Ann' } });
  });

  // Strings of any code unit, lone surrogates and characters JSON escapes included; keys that
  // are integers or special names; numbers of every kind, -0 included; undefined object values.
  const unit = fc.oneof(
    fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff', '"', '\\', '\u0000', '\u2028', 'é'),
  );
  const text = fc.string({ unit, maxLength: 12 });
  const key = fc.oneof(text, fc.constantFrom('__proto__', 'constructor', 'toJSON', '0', '7', '-1'));
  const { json } = fc.letrec<{ json: unknown }>((tie) => ({
    json: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constant(null),
      fc.boolean(),
      fc.maxSafeInteger(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.constantFrom(-0, 9, 10, -100, 1e20, 1e21, 123456789012345680000, -1e-7, 5e-324),
      text,
      fc.array(tie('json')),
      fc.dictionary(key, fc.option(tie('json'), { nil: undefined })),
    ),
  }));

  test('property: for JSON-safe values, the copy equals the round trip', () => {
    fc.assert(
      fc.property(json, (payload) => expectJsonRoundTrip(payload)),
      { numRuns: 500 },
    );
  });

  test('property: a payload is accepted at a limit of its exact JSON size, refused one byte below', () => {
    fc.assert(
      fc.property(json, (payload) => {
        const bytes = jsonBytes(payload);
        expectSameAsJson(copy(payload, bytes), payload);
        expect(refusal(payload, bytes - 1).message).toMatch(/is too large/);
      }),
      { numRuns: 500 },
    );
  });
});

describe('refused: a TypeError that names the first part that would not survive JSON', () => {
  class Point {
    constructor(readonly x: number) {}
  }
  class Tags extends Array<string> {}
  const cycle: Record<string, unknown> = { list: [] };
  (cycle.list as unknown[]).push(cycle);
  const selfArray: unknown[] = [];
  selfArray.push(selfArray);
  const Anonymous = (() => class {})();
  const holey = [1, 2, 3];
  delete holey[1];
  test.each<[string, unknown, string]>([
    ['a function', { a: [0, 1, 2, { b: () => 1 }] }, 'payload.a[3].b is a function'],
    ['a symbol', { kind: Symbol('k') }, 'payload.kind is a symbol'],
    ['a BigInt', { count: 10n }, 'payload.count is a bigint'],
    ['NaN', { score: NaN }, 'payload.score is NaN'],
    ['Infinity', { scores: [1, Infinity] }, 'payload.scores[1] is Infinity'],
    ['-Infinity', [-Infinity], 'payload[0] is -Infinity'],
    ['an object cycle', cycle, 'payload.list[0] is a cycle'],
    ['an array cycle', { a: selfArray }, 'payload.a[0] is a cycle'],
    ['a Date', { at: new Date(0) }, 'payload.at is a Date, not a plain object'],
    ['a Map', { seen: new Map() }, 'payload.seen is a Map, not a plain object'],
    ['a class instance', { where: new Point(1) }, 'payload.where is a Point, not a plain object'],
    [
      'an anonymous class instance',
      { x: new Anonymous() },
      'payload.x is a class instance, not a plain object',
    ],
    ['a Buffer', { data: Buffer.from('x') }, 'payload.data is a Buffer, not a plain object'],
    ['a boxed string', { s: new String('x') }, 'payload.s is a String, not a plain object'],
    ['an array subclass', { tags: Tags.from(['a']) }, 'payload.tags is a Tags, not a plain array'],
    ['a hole in an array', { list: holey }, 'payload.list[1] is a hole'],
    [
      "an array's own toJSON (JSON would send what it returns)",
      { list: Object.assign([1, 2], { toJSON: () => 'two items' }) },
      'payload.list has a toJSON method, which JSON would call instead',
    ],
    [
      'a non-enumerable toJSON on a plain object',
      { user: Object.defineProperty({ id: 1 }, 'toJSON', { value: () => ({}) }) },
      'payload.user has a toJSON method, which JSON would call instead',
    ],
    [
      'a toJSON getter',
      { user: Object.defineProperty({ id: 1 }, 'toJSON', { get: () => () => 1 }) },
      'payload.user has a toJSON method, which JSON would call instead',
    ],
    ['an undefined array item', { list: [1, undefined] }, 'payload.list[1] is undefined'],
    ['symbol keys on an object', { meta: { [Symbol('s')]: 1 } }, 'payload.meta has symbol keys'],
    [
      'a key that is not an identifier',
      { 'a b': { '': () => 1 } },
      'payload["a b"][""] is a function',
    ],
    ['a payload that is itself a function', () => 1, 'payload is a function'],
  ])('%s', (_name, payload, message) => {
    expect(refusal(payload).message).toBe(PREFIX + message);
  });

  test('more than 100 levels of nesting', () => {
    expect(refusal(nested(101)).message).toMatch(
      /^add\(\): the payload of task "t" does not survive JSON: payload(\.a\[0\]){50} is nested more than 100 levels deep$/,
    );
  });

  test('a proxy whose length no array can have', () => {
    const proxy = new Proxy([], {
      get: (target, key) => (key === 'length' ? -1 : Reflect.get(target, key)),
    });
    expect(refusal({ list: proxy }).message).toBe(`${PREFIX}payload.list has an invalid length`);
  });

  test('through defineTask: add() refuses with the same message, naming the task', () => {
    const task = defineTask('send-mail', (_payload: unknown) => undefined);
    const defaults = { timeoutMs: 0, retries: 0, retryDelayMs: 0 };
    expect(() => toTask(task, [{ to: [{ name: () => 'x' }] }], defaults, Infinity)).toThrow(
      new TypeError(
        'add(): the payload of task "send-mail" does not survive JSON: payload.to[0].name is a function',
      ),
    );
  });
});

describe('getters and proxy traps that throw: a TypeError naming the place, the error as its cause', () => {
  const boom = new Error('boom');
  const throwing = () => {
    throw boom;
  };
  const revoked = () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  };
  const threw = (path: string) => `${PREFIX}${path} threw when read (the error is the cause)`;

  test.each<[string, () => unknown, string]>([
    [
      'a getter',
      () => ({ user: Object.defineProperty({}, 'email', { get: throwing, enumerable: true }) }),
      'payload.user.email',
    ],
    [
      'an array index getter',
      () => ({ list: Object.defineProperty([1, 2], 1, { get: throwing }) }),
      'payload.list[1]',
    ],
    ['a get trap', () => ({ a: new Proxy({ b: 1 }, { get: throwing }) }), 'payload.a.b'],
    [
      'a get trap on an array, at its length',
      () => [new Proxy([1], { get: throwing })],
      'payload[0]',
    ],
    ['an ownKeys trap', () => ({ a: new Proxy({}, { ownKeys: throwing }) }), 'payload.a'],
    [
      'a getOwnPropertyDescriptor trap',
      () => ({ a: new Proxy({ b: 1 }, { getOwnPropertyDescriptor: throwing }) }),
      'payload.a',
    ],
    [
      'a getPrototypeOf trap',
      () => ({ a: new Proxy({}, { getPrototypeOf: throwing }) }),
      'payload.a',
    ],
  ])('%s', (_name, payload, path) => {
    const error = refusal(payload());
    expect(error.message).toBe(threw(path));
    expect(error.cause).toBe(boom);
  });

  test.each<[string, () => unknown, string]>([
    ['as the payload', () => revoked(), 'payload'],
    ['in an array', () => ({ list: [1, revoked()] }), 'payload.list[1]'],
    ['in an object', () => ({ a: { b: revoked() } }), 'payload.a.b'],
  ])('a revoked proxy %s (Array.isArray itself throws)', (_name, payload, path) => {
    const error = refusal(payload());
    expect(error.message).toBe(threw(path));
    expect(error.cause).toBeInstanceOf(TypeError);
  });

  test('whatever is thrown becomes the cause untouched, even a value that is not an Error', () => {
    for (const thrown of [undefined, 'a string', revoked()]) {
      const payload = Object.defineProperty({}, 'x', {
        get: () => {
          throw thrown;
        },
        enumerable: true,
      });
      const error = refusal(payload);
      expect(error.message).toBe(threw('payload.x'));
      expect(error.cause).toBe(thrown);
      expect('cause' in error).toBe(true);
    }
  });
});

describe('a getter that changes its answer: each value is read once, and the value read is the value copied', () => {
  /** A getter answering `answers` in turn (the last one from then on), counting its reads. */
  function changing(...answers: unknown[]) {
    const reads = { count: 0 };
    const payload = Object.defineProperty({}, 'value', {
      get: () => answers[Math.min(reads.count++, answers.length - 1)],
      enumerable: true,
    });
    return { payload, reads };
  }

  test('a value first, then a function: the value is copied, as a plain data property', () => {
    const { payload, reads } = changing({ ok: 1 }, () => 'sneaked in');
    const copied = copy(payload) as { value: unknown };
    expect(reads.count).toBe(1);
    expect(copied).toStrictEqual({ value: { ok: 1 } });
    expect(Object.getOwnPropertyDescriptor(copied, 'value')).toHaveProperty('value', { ok: 1 });
    expect(JSON.stringify(copied)).toBe('{"value":{"ok":1}}');
  });

  test('a function on the one read made: refused', () => {
    const { payload, reads } = changing(() => 'sneaked in', { ok: 1 });
    expect(refusal(payload).message).toBe(`${PREFIX}payload.value is a function`);
    expect(reads.count).toBe(1);
  });

  test('a proxy answering differently on each get: every key and index is read exactly once', () => {
    const reads = new Map<PropertyKey, number>();
    const counting = <T extends object>(target: T) =>
      new Proxy(target, {
        get(target, key, receiver) {
          reads.set(key, (reads.get(key) ?? 0) + 1);
          const value: unknown = Reflect.get(target, key, receiver);
          return typeof value === 'number' ? value * (reads.get(key) ?? 1) : value;
        },
      });
    const copied = copy(counting({ a: 1, b: counting([10, 20]) }));
    expect(copied).toEqual({ a: 1, b: [10, 20] });
    expect([...reads]).toEqual([
      ['a', 1],
      ['b', 1],
      ['length', 1],
      ['0', 1],
      ['1', 1],
    ]);
  });

  test('a getter that deletes a later key: that key is left out, as JSON leaves it out', () => {
    const make = () => {
      const payload: Record<string, unknown> = {};
      Object.defineProperty(payload, 'a', { get: () => delete payload.b && 1, enumerable: true });
      payload.b = 2;
      return payload;
    };
    expect(copy(make())).toStrictEqual({ a: 1 });
    expect(copy(make())).toStrictEqual(JSON.parse(JSON.stringify(make())));
  });
});

describe('maxBytes: the UTF-8 size of the JSON, exact at the boundary', () => {
  test.each<[string, unknown]>([
    ['ASCII', { name: 'Ann', tags: ['a', 'b'], n: 12345, ok: true, none: null }],
    ['multi-byte characters (2, 3 and 4 bytes)', { s: 'é€😀', k: ['日本'] }],
    ['characters JSON escapes, in keys too', { 'k\n"': '\u0000\\\t', u: '\u001f\u007f' }],
    ['lone surrogates, written as \\u escapes', ['\ud800', 'x\udfff']],
    ['numbers of every notation', [-0, 1e21, -1e-7, -0.0000012345678901234567, 5e-324, -123]],
    ['dropped undefined values and empty containers', { a: undefined, b: {}, c: [], d: '' }],
  ])('%s: exactly maxBytes is accepted, maxBytes + 1 refused', (_name, payload) => {
    const bytes = jsonBytes(payload);
    expectSameAsJson(copy(payload, bytes), payload);
    const error = refusal(payload, bytes - 1);
    expect(error.message).toMatch(
      new RegExp(
        `^add\\(\\): the payload of task "t" is too large: its JSON is at least \\d+ bytes, more than maxPayloadBytes \\(${bytes - 1}\\)$`,
      ),
    );
  });

  test('sizes counted by hand: "é" is 2 bytes, "😀" 4, a newline 2 (\\n), a lone surrogate 6', () => {
    expect(copy(['é😀\n\ud800'], 18)).toEqual(['é😀\n\ud800']); // [" 2 + 4 + 2 + 6 "] = 18
    expect(refusal(['é😀\n\ud800'], 17).message).toMatch(/more than maxPayloadBytes \(17\)/);
  });

  test('an undefined payload is 0 bytes; Infinity is no limit', () => {
    expect(copy(undefined, 0)).toBeUndefined();
    expect(refusal('', 1).message).toMatch(/is too large/);
    const big = 'x'.repeat(1_000_000);
    expect(copy({ big }, Infinity)).toEqual({ big });
  });

  test('a too-large payload is refused before a later part that would also be refused', () => {
    expect(refusal({ text: 'x'.repeat(100), f: () => 1 }, 50).message).toMatch(/is too large/);
  });
});

describe('a huge payload is refused long before it is all read', () => {
  const MiB = 1024 * 1024;

  /** `target` behind a proxy that counts the reads of its items. */
  function countingReads<T extends object>(target: T) {
    const reads = { count: 0 };
    const proxy = new Proxy(target, {
      get(target, key, receiver) {
        if (key !== 'length') reads.count++;
        return Reflect.get(target, key, receiver);
      },
    });
    return { proxy, reads };
  }

  test('5 million numbers (37 MiB of JSON) against 1 MiB: refused before reading one item', () => {
    const { proxy, reads } = countingReads(Array.from({ length: 5_000_000 }, (_, i) => i));
    expect(refusal(proxy, MiB).message).toMatch(/is too large: its JSON is at least \d+ bytes/);
    expect(reads.count).toBe(0);
  });

  test('a million 20-character strings against 1 MiB: refused within the first 5% of them', () => {
    const items = Array.from(
      { length: 1_000_000 },
      (_, i) => `item ${String(i).padStart(15, '0')}`,
    );
    const { proxy, reads } = countingReads(items);
    expect(refusal(proxy, MiB).message).toMatch(/is too large/);
    expect(reads.count).toBeGreaterThan(0);
    expect(reads.count).toBeLessThan(50_000);
  });

  test('an object of 200,000 keys with 100-byte values against 1 MiB: refused within the first 5% of its keys', () => {
    const target: Record<string, string> = {};
    for (let i = 0; i < 200_000; i++) target[`key${i}`] = 'v'.repeat(100);
    const { proxy, reads } = countingReads(target);
    expect(refusal(proxy, MiB).message).toMatch(/is too large/);
    expect(reads.count).toBeLessThan(10_000);
  });
});

describe.each(EXPRESS_VERSIONS)(
  '%s: maxPayloadBytes, from the middleware or the definition',
  (_name, createExpress) => {
    /** An app whose route adds `task` with a payload of `bytes` bytes of JSON, and answers what add() said. */
    function appAdding(task: DefinedTask<{ text: string }>, maxPayloadBytes?: number) {
      return makeApp(
        createExpress,
        (app) => {
          app.post('/add/:bytes', (req, res) => {
            // {"text":"…"} is 11 bytes around the text.
            const text = 'x'.repeat(Number(req.params.bytes) - 11);
            try {
              res.locals.backgroundTasks.add(task, { text });
              res.send('queued');
            } catch (error) {
              res.status(400).send(`${(error as Error).name}: ${(error as Error).message}`);
            }
          });
        },
        { tasks: maxPayloadBytes === undefined ? {} : { maxPayloadBytes } },
      );
    }
    const sizes: number[] = [];
    const measure = defineTask(
      'measure',
      ({ text }: { text: string }) => void sizes.push(text.length),
    );

    test('by default 1 MiB: a payload of 1 MiB is queued, one byte more is refused at add()', async () => {
      const { app, bg } = appAdding(measure);
      await request(app).post('/add/1048576').expect(200, 'queued');
      const res = await request(app).post('/add/1048577').expect(400);
      expect(res.text).toBe(
        'TypeError: add(): the payload of task "measure" is too large: its JSON is at least 1048577 bytes, more than maxPayloadBytes (1048576)',
      );
      await bg.idle();
      expect(bg.stats()).toMatchObject({ succeeded: 1, rejected: 0 });
    });

    test("the middleware's option sets it for every defined task; Infinity lifts it", async () => {
      const small = appAdding(measure, 100);
      await request(small.app).post('/add/100').expect(200, 'queued');
      await request(small.app)
        .post('/add/101')
        .expect(400, /more than maxPayloadBytes \(100\)/);
      const unlimited = appAdding(measure, Infinity);
      await request(unlimited.app).post('/add/3000000').expect(200, 'queued');
      await Promise.all([small.bg.idle(), unlimited.bg.idle()]);
    });

    test("a definition's own maxPayloadBytes wins over the middleware's", async () => {
      const generous = defineTask('generous', (_payload: { text: string }) => undefined, {
        maxPayloadBytes: 2_000_000,
      });
      const strict = defineTask('strict', (_payload: { text: string }) => undefined, {
        maxPayloadBytes: 50,
      });
      await request(appAdding(generous).app).post('/add/1500000').expect(200, 'queued');
      await request(appAdding(strict, Infinity).app)
        .post('/add/51')
        .expect(400, /task "strict" is too large: .* more than maxPayloadBytes \(50\)/);
    });
  },
);

test('maxPayloadBytes is checked where it is given: a positive integer or Infinity', () => {
  for (const bad of [0, -1, 1.5, NaN, '1024', null]) {
    expect(() => backgroundTasks({ maxPayloadBytes: bad as number })).toThrow(
      /backgroundTasks\(\): option "maxPayloadBytes" must be an integer from 1/,
    );
    expect(() => defineTask('t', () => undefined, { maxPayloadBytes: bad as number })).toThrow(
      /defineTask\(\): option "maxPayloadBytes" must be an integer from 1/,
    );
  }
  expect(() => backgroundTasks({ maxPayloadBytes: Infinity })).not.toThrow();
  expect(defineTask('t', () => undefined, { maxPayloadBytes: 10 }).options).toEqual({
    maxPayloadBytes: 10,
  });
});

describe('a large string is refused as too large from its length alone, never built again', () => {
  const MiB = 1024 * 1024;

  test.each<[string, string]>([
    // 100 MiB of a character JSON escapes in six bytes: its JSON (600 MiB) is longer than any
    // string V8 can build, so building it threw a RangeError before ("threw when read").
    ['100 MiB of \\u0001', '\u0001'],
    ['100 MiB of "', '"'],
    ['100 MiB of ASCII', 'a'],
    ['50 million lone surrogates', '\ud800'],
    ['50 million emoji halves and pairs', '😀\udc00'],
  ])('%s against 1 MiB: "too large", counted as its length plus quotes', (_name, unit) => {
    const text = unit.repeat(unit === '\ud800' ? 50_000_000 : Math.ceil((100 * MiB) / unit.length));
    const error = refusal({ text }, MiB);
    expect(error.cause).toBeUndefined();
    // The key's 8 bytes (`"text":` and a comma) and the string's length with its quotes: nothing more was counted.
    expect(error.message).toBe(
      `add(): the payload of task "t" is too large: its JSON is at least ${8 + text.length + 2} bytes, more than maxPayloadBytes (${MiB})`,
    );
  });

  test('a string shorter than the limit whose JSON is longer is counted up to the limit, not past it', () => {
    // 300,000 lone surrogates: 300,002 units fit in 1 MiB, their 1.8 MB of JSON does not.
    const text = '\ud800'.repeat(300_000);
    const error = refusal(text, MiB);
    expect(error.message).toMatch(/is too large: its JSON is at least (\d+) bytes/);
    const counted = Number(/at least (\d+) bytes/.exec(error.message)![1]);
    expect(counted).toBeGreaterThan(MiB);
    expect(counted).toBeLessThanOrEqual(MiB + 6);
  });

  test('keys are counted the same way: a 2 MiB key is refused from its length', () => {
    const key = 'k'.repeat(2 * MiB);
    expect(refusal({ [key]: 1 }, MiB).message).toBe(
      `add(): the payload of task "t" is too large: its JSON is at least ${key.length + 4} bytes, more than maxPayloadBytes (${MiB})`,
    );
  });
});

describe('an object is refused once the values read pass the limit, after its keys are listed', () => {
  test('150,000 keys (2.6 MB of JSON) against 1 MiB: every key listed, and only the values that fit in 1 MiB read', () => {
    const target: Record<string, number> = {};
    for (let i = 0; i < 150_000; i++) target[`key${i}`] = i;
    let reads = 0;
    const proxy = new Proxy(target, {
      get: (object, key) => (reads++, Reflect.get(object, key)),
    });
    expect(refusal(proxy, 1024 * 1024).message).toMatch(/is too large/);
    // Each member read is at least `"key0":0,` (9 bytes) of JSON.
    expect(reads).toBeGreaterThan(0);
    expect(reads).toBeLessThanOrEqual(Math.ceil((1024 * 1024) / 9) + 1);
  });
});
