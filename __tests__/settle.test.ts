/**
 * No value a user's code returns can crash the process. Every place the library settles what user
 * code returned (a task, `onTaskError`, an override's `handle`, a notifier, a durable queue's
 * `enqueue`, a BullMQ or pg-boss worker's handler) is handed native promises, rejected and resolved, with a throwing `constructor`
 * getter, an own `then` and `Symbol.species` traps, and thenables whose `then` throws after
 * calling back. Each site runs in a child process, where an unhandled rejection or an uncaught
 * exception would end it with exit code 1 and the error on stderr.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { HOSTILE_VALUES } from './support/hostile-values';
import { describePgBoss } from './support/pgboss-node';
import { startPostgres, type PostgresServer } from './support/postgres';
import { startRedis, type RedisServer } from './support/redis';

interface ChildResult {
  code: number | null;
  stderr: string;
  lines: Array<Record<string, unknown>>;
}

function runChild(site: string, env: Record<string, string> = {}): Promise<ChildResult> {
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'support/settle-child.ts')],
    { cwd: path.join(__dirname, '..'), env: { ...process.env, ...env, SITE: site } },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => {
    child.on('close', (code) => {
      const lines = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      resolve({ code, stderr, lines });
    });
  });
}

/** The child's line for each value, after checking that it ended well and said nothing on stderr. */
function linesOf(result: ChildResult): Array<Record<string, unknown>> {
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  expect(result.lines.at(-1)).toEqual({ done: true });
  const lines = result.lines.slice(0, -1);
  expect(lines.map((line) => line.value)).toEqual(HOSTILE_VALUES.map((value) => value.name));
  return lines;
}

type Stats = Record<string, number>;

/** What each value added to the counters. */
function outcomes(lines: Array<Record<string, unknown>>): string[] {
  let before: Stats = { succeeded: 0, failed: 0 };
  return lines.map((line) => {
    const stats = line.stats as Stats;
    const outcome =
      stats.succeeded === before.succeeded + 1 && stats.failed === before.failed
        ? 'succeeded'
        : stats.failed === before.failed + 1 && stats.succeeded === before.succeeded
          ? 'failed'
          : `unaccounted: ${JSON.stringify(stats)}`;
    before = stats;
    return outcome;
  });
}

const expected = HOSTILE_VALUES.map((value) => value.settles);

/** A worker site: each job completed or failed as its value settled, and was counted so. */
async function expectJobsAsSettled(site: string, env: Record<string, string>): Promise<void> {
  const lines = linesOf(await runChild(site, env));
  expect(lines.map((line) => (line.outcome === 'completed' ? 'succeeded' : 'failed'))).toEqual(
    expected,
  );
  expect(outcomes(lines)).toEqual(expected);
}
const TIMEOUT = 60_000;

describe('settle(): a value returned by user code never crashes the process', () => {
  test.each(['task', 'notifier'])(
    'returned by a %s: each is counted as it settled, and the process lives',
    async (site) => {
      const lines = linesOf(await runChild(site));
      expect(outcomes(lines)).toEqual(expected);
      for (const [i, line] of lines.entries()) {
        // A promise no handler can be attached to fails with a TypeError saying so.
        const unobservable = /constructor getter|Symbol.species/.test(HOSTILE_VALUES[i].name);
        if (unobservable) expect(line.failedWith).toEqual(['TypeError']);
        expect((line.stats as Stats).running + (line.stats as Stats).pending).toBe(0);
      }
    },
    TIMEOUT,
  );

  test(
    'returned by onTaskError: a rejection is logged as the hook failing, a success is not',
    async () => {
      const lines = linesOf(await runChild('onTaskError'));
      expect(lines.map((line) => (line.hookFailed === 1 ? 'failed' : 'succeeded'))).toEqual(
        expected,
      );
      expect(lines.map((line) => (line.stats as Stats).failed)).toEqual(
        HOSTILE_VALUES.map((_value, i) => i + 1),
      );
    },
    TIMEOUT,
  );

  test(
    "returned by an override's handle after it responded: the response stands; a rejection is logged",
    async () => {
      const lines = linesOf(await runChild('override'));
      for (const line of lines) {
        expect(line).toMatchObject({ status: 503, body: 'answered by the override' });
      }
      expect(
        lines.map((line) =>
          (line.overrideFailed as string[]).length > 0 ? 'failed' : 'succeeded',
        ),
      ).toEqual(expected);
      for (const line of lines) expect(line.overrideFailed).not.toContain('did not respond');
    },
    TIMEOUT,
  );

  test(
    "returned by a durable queue's enqueue: a success is an enqueue, a failure is logged and the task runs here",
    async () => {
      const lines = linesOf(await runChild('durable'));
      let enqueued = 0;
      const seen = lines.map((line) => {
        const stats = line.stats as Stats;
        const outcome =
          stats.enqueued === enqueued + 1 && line.enqueueFailed === 0 ? 'succeeded' : 'failed';
        enqueued = stats.enqueued;
        return outcome;
      });
      expect(seen).toEqual(expected);
      // Each refused hand-off ran in-process instead: every task is accounted for.
      const last = lines.at(-1)!.stats as Stats;
      expect(last.enqueued + last.succeeded).toBe(HOSTILE_VALUES.length);
    },
    TIMEOUT,
  );

  describe('returned by a BullMQ worker handler', () => {
    let redis: RedisServer;
    beforeAll(async () => {
      redis = await startRedis();
    });
    afterAll(async () => {
      await redis?.stop();
    });

    test(
      'each job completes or fails as the value settled, and the worker process lives',
      () => expectJobsAsSettled('worker', { REDIS_URL: redis.url }),
      TIMEOUT,
    );
  });

  describePgBoss('returned by a pg-boss worker handler', () => {
    let postgres: PostgresServer;
    beforeAll(async () => {
      postgres = await startPostgres();
    }, TIMEOUT);
    afterAll(async () => {
      await postgres?.stop();
    });

    test(
      'each job completes or fails as the value settled, and the worker process lives',
      () => expectJobsAsSettled('pgboss-worker', { DATABASE_URL: postgres.url }),
      TIMEOUT,
    );
  });

  test(
    "swallows only the promise it could not settle: the app's own unhandled rejection still crashes the process",
    async () => {
      const result = await runChild('foreign');
      expect(result.lines[0]).toEqual({
        value: 'unobservable',
        stats: expect.objectContaining({ failed: 1 }),
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('a rejection of the app itself, unhandled');
      expect(result.stderr).not.toContain('the original rejection');
    },
    TIMEOUT,
  );
});
