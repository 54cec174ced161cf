/** The heap in use once garbage is gone: for child processes started with --expose-gc. */

declare const gc: () => void;

/** Heap used after two full GCs (the second collects what the first's finalizers let go). */
export function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
