/**
 * The first import of the `/bullmq` entry point. bullmq and ioredis are optional peer
 * dependencies: this checks that both can be found before anything requires them, and otherwise
 * throws an Error that names the missing ones and the command that installs them, instead of
 * Node's "Cannot find module" from deep inside the producer or the worker.
 */

const PEERS = ['bullmq', 'ioredis'];

/** Whether `name` resolves from here, as the producer's and the worker's own imports will. */
function installed(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === 'MODULE_NOT_FOUND') return false;
    throw error;
  }
}

const missing = PEERS.filter((name) => !installed(name));
if (missing.length > 0) {
  const one = missing.length === 1;
  throw new Error(
    `express-background-tasks/bullmq needs ${missing.join(' and ')}, which ${one ? 'is' : 'are'} not ` +
      'installed (optional peer dependencies of express-background-tasks, needed by this entry point ' +
      `only). Install ${one ? 'it' : 'them'} with: npm install ${missing.join(' ')}`,
  );
}

export {}; // a module, not a script: nothing here is global
