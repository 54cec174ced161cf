/**
 * Waiting with a deadline: whether a promise settled before a number of milliseconds had passed.
 * What `drain()` and `closeLogger()` both wait by; the timer is cleared either way.
 */

/** Resolves `true` once `promise` has resolved, or `false` after `ms`, whichever comes first. */
export function inTime(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)));
  return Promise.race([promise.then(() => true), late]).finally(() => clearTimeout(timer));
}
