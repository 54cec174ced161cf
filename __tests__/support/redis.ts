/**
 * A real redis-server for the BullMQ tests: each test file starts its own on a free loopback
 * port, without persistence, and can stop and restart it (the Redis-down tests). CI installs
 * the binary (`apt-get install redis-server`); without it the tests fail saying so.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './ports';

/** The binary: `REDIS_SERVER`, else `redis-server` on the PATH. */
const BINARY = process.env.REDIS_SERVER ?? 'redis-server';
const MISSING =
  `${BINARY} was not found. The BullMQ tests need a real Redis: install it with ` +
  '`apt-get install redis-server` (Debian/Ubuntu) or set REDIS_SERVER to the binary.';

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Stops the server (SIGTERM) and waits for it to exit. Data is lost: nothing is saved. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
}

/**
 * Starts redis-server on a free port and resolves once it accepts connections. `extraArgs` are
 * added to the command line, and kept on a restart: `['--maxmemory', '2mb']`, `['--requirepass', 's3cret']`.
 * Default: none.
 */
export async function startRedis(extraArgs: readonly string[] = []): Promise<RedisServer> {
  const port = await freePort();
  let child = await launch(port, extraArgs);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      await stopChild(child);
    },
    async restart() {
      await stopChild(child);
      child = await launch(port, extraArgs);
    },
  };
}

/**
 * Polls `check` until it returns a value other than undefined or false. Only for state that
 * announces no event (a job's state in Redis, a log line written by another component).
 */
export async function pollUntil<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
): Promise<Exclude<T, undefined | false>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value as Exclude<T, undefined | false>;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The database that fillUp() fills: not BullMQ's (0), so that emptying it leaves the queues alone. */
const FILLER_DB = 1;
/**
 * How far below what a filled Redis holds fillUp() sets its limit: full by a few bytes, a Redis
 * would take writes again as soon as a connection closed and its buffers were freed.
 */
const FULL_MARGIN_BYTES = 256 * 1024;
/** The `maxmemory` each filled server was started with, by URL: fillUp() lowers it, freeUp() restores it. */
const startLimits = new Map<string, number>();

/**
 * Fills a Redis started with `--maxmemory … --maxmemory-policy noeviction`: writes 10 kB values
 * until Redis refuses one for want of memory, then sets its limit a little below what it holds,
 * and resolves with that refusal. Memory is one pool for every database, so from then on
 * BullMQ's writes are refused too.
 */
export async function fillUp(url: string): Promise<Error> {
  const client = new Redis(url, { db: FILLER_DB });
  try {
    const [, configured] = (await client.config('GET', 'maxmemory')) as [string, string];
    const limit = startLimits.get(url) ?? Number(configured);
    startLimits.set(url, limit);
    await client.config('SET', 'maxmemory', String(limit));
    let refused: Error | undefined;
    for (let i = 0; refused === undefined; i += 1) {
      refused = await client.set(`filler:${i}`, 'x'.repeat(10_000)).then(
        () => undefined,
        (error: Error) => error,
      );
    }
    const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
    await client.config('SET', 'maxmemory', String(used - FULL_MARGIN_BYTES));
    return refused;
  } finally {
    client.disconnect();
  }
}

/** Frees what fillUp() wrote and restores the limit: Redis takes writes again. */
export async function freeUp(url: string): Promise<void> {
  const client = new Redis(url, { db: FILLER_DB });
  try {
    await client.flushdb();
    await client.config('SET', 'maxmemory', String(startLimits.get(url)));
  } finally {
    client.disconnect();
  }
}

function launch(port: number, extraArgs: readonly string[]): Promise<ChildProcess> {
  const args = [
    ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    ...extraArgs,
  ];
  const child = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'ENOENT' ? new Error(MISSING) : error),
    );
    child.once('exit', (code, signal) =>
      reject(new Error(`redis-server exited (${code ?? signal}) before it was ready:\n${output}`)),
    );
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}
