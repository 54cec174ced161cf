/**
 * The last resort for a native promise that no handler can be attached to: one whose
 * `constructor` getter throws, or whose constructor's `Symbol.species` cannot be read or used.
 * The intrinsic `then` (like `await`) reads them before it attaches anything, and no other way
 * exists, so such a promise's rejection would reach Node as unhandled and crash the process.
 * `swallowRejectionOf()` records it; a process-wide `unhandledRejection` listener, added the first
 * time one is recorded, ignores exactly those. Any other unhandled rejection goes on as Node's
 * mode (`--unhandled-rejections`) says it would without the listener.
 */

/** Ignores `promise`'s rejection, which nothing can handle, when Node reports it as unhandled. */
export function swallowRejectionOf(promise: Promise<unknown>): void {
  swallowed.add(promise);
  if (listening) return;
  listening = true;
  process.on('unhandledRejection', onUnhandledRejection);
}

const swallowed = new WeakSet<Promise<unknown>>();
let listening = false;

function onUnhandledRejection(reason: unknown, promise: Promise<unknown>): void {
  if (swallowed.has(promise)) return;
  // Another listener handles what is not ours, as it would without this one.
  if (process.listenerCount('unhandledRejection') > 1) return;
  switch (unhandledRejectionsMode()) {
    case 'warn-with-error-code':
      process.emitWarning(`Unhandled promise rejection: ${describe(reason)}`, {
        type: 'UnhandledPromiseRejectionWarning',
      });
      process.exitCode = 1;
      return;
    case 'throw':
      // Node's default: the reason becomes an uncaught exception (a crash, unless an
      // 'uncaughtException' listener takes it).
      throw isErrorLike(reason) ? reason : unhandledRejectionError(reason);
    default:
      // 'warn' and 'none' treat a listened-to rejection as they treat any; 'strict' never gets here.
      return;
  }
}

/** Node's `--unhandled-rejections` mode: the command line's last word, else NODE_OPTIONS', else `throw`. */
function unhandledRejectionsMode(): string {
  const words = [...(process.env.NODE_OPTIONS ?? '').split(/\s+/), ...process.execArgv];
  let mode = 'throw';
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    if (word.startsWith('--unhandled-rejections=')) mode = word.slice(word.indexOf('=') + 1);
    else if (word === '--unhandled-rejections' && i + 1 < words.length) mode = words[++i];
  }
  return mode;
}

function isErrorLike(value: unknown): boolean {
  return typeof value === 'object' && value !== null && Object.hasOwn(value, 'stack');
}

/** What Node throws for a non-Error reason (`ERR_UNHANDLED_REJECTION`). */
function unhandledRejectionError(reason: unknown): Error {
  const error = new Error(
    'This error originated either by throwing inside of an async function without a catch ' +
      'block, or by rejecting a promise which was not handled with .catch(). The promise ' +
      `rejected with the reason "${describe(reason)}".`,
  );
  error.name = 'UnhandledPromiseRejection';
  (error as Error & { code: string }).code = 'ERR_UNHANDLED_REJECTION';
  return error;
}

function describe(reason: unknown): string {
  try {
    return String(reason);
  } catch {
    return Object.prototype.toString.call(reason);
  }
}
