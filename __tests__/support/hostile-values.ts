/**
 * Values a task, a hook, an override or a worker's handler may return that a naive `await`
 * mishandles: native promises, rejected and resolved, with a throwing `constructor` getter, an
 * own `then`, or a `Symbol.species` trap, and thenables whose `then` throws after calling back.
 * Each says how `settle()` must take it: as a success or as a failure.
 */

export interface HostileValue {
  readonly name: string;
  make(): unknown;
  /** How the attempt must end. */
  readonly settles: 'succeeded' | 'failed';
}

const throwingGetter = (what: string) => ({
  get() {
    throw new Error(`${what} getter exploded`);
  },
});

function withConstructorGetter(promise: Promise<unknown>): Promise<unknown> {
  return Object.defineProperty(promise, 'constructor', throwingGetter('constructor'));
}

/** A constructor whose `Symbol.species` getter throws. */
function withSpeciesGetter(promise: Promise<unknown>): Promise<unknown> {
  const constructor = Object.defineProperty({}, Symbol.species, throwingGetter('species'));
  return Object.assign(promise, { constructor });
}

/** A `Symbol.species` that is a constructor which throws when `then` builds its promise. */
function withThrowingSpecies(promise: Promise<unknown>): Promise<unknown> {
  class Trap {
    constructor() {
      throw new Error('species constructor exploded');
    }
  }
  return Object.assign(promise, { constructor: { [Symbol.species]: Trap } });
}

const rejected = () => Promise.reject(new Error('the original rejection'));
const resolved = () => Promise.resolve('the original value');

export const HOSTILE_VALUES: readonly HostileValue[] = [
  {
    name: 'a rejected promise with a throwing constructor getter',
    make: () => withConstructorGetter(rejected()),
    settles: 'failed',
  },
  {
    // Nothing can attach a handler to it, so its outcome cannot be known: counted failed.
    name: 'a resolved promise with a throwing constructor getter',
    make: () => withConstructorGetter(resolved()),
    settles: 'failed',
  },
  {
    name: 'a rejected promise whose own then does nothing',
    make: () => Object.assign(rejected(), { then: () => undefined }),
    settles: 'failed',
  },
  {
    name: 'a resolved promise whose own then throws',
    make: () =>
      Object.assign(resolved(), {
        then: () => {
          throw new Error('own then exploded');
        },
      }),
    settles: 'succeeded',
  },
  {
    name: 'a rejected promise whose Symbol.species getter throws',
    make: () => withSpeciesGetter(rejected()),
    settles: 'failed',
  },
  {
    name: 'a resolved promise whose Symbol.species getter throws',
    make: () => withSpeciesGetter(resolved()),
    settles: 'failed',
  },
  {
    name: 'a rejected promise whose Symbol.species constructor throws',
    make: () => withThrowingSpecies(rejected()),
    settles: 'failed',
  },
  {
    name: 'a resolved promise whose Symbol.species constructor throws',
    make: () => withThrowingSpecies(resolved()),
    settles: 'failed',
  },
  {
    name: 'a thenable whose then throws after calling back with a value',
    make: () => ({
      then(resolve: (value: unknown) => void) {
        resolve('called back');
        throw new Error('then exploded after calling back');
      },
    }),
    settles: 'succeeded',
  },
  {
    name: 'a thenable whose then throws after calling back with a rejection',
    make: () => ({
      then(_resolve: unknown, reject: (reason: unknown) => void) {
        reject(new Error('rejected by the thenable'));
        throw new Error('then exploded after calling back');
      },
    }),
    settles: 'failed',
  },
];
