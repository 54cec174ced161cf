/**
 * The demo's `POST /orders` as a real child process: an order and its receipt in one
 * transaction, `?fail=1` rolled back with no receipt; in PGlite inside the process (no
 * DATABASE_URL) and on a PostgreSQL server (DATABASE_URL). On a Node where pg-boss cannot load
 * (Node 20), the demo still starts, says so, and the route answers a plain-text 501.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DEMO_PG_QUEUE } from '../demo-app/orders';
import { PG_BOSS_NODE } from './support/pgboss-node';
import { startDemo, type Demo } from './support/demo-process';
import { startPostgres, type PostgresServer } from './support/postgres';
import { pollUntil } from './support/redis';

let demo: Demo | undefined;
afterEach(() => demo?.cleanUp());

async function order(
  base: string,
  query = '',
): Promise<{ status: number; body: { orderId: number } }> {
  const response = await fetch(`${base}/orders?email=ann@example.com${query}`, { method: 'POST' });
  return { status: response.status, body: (await response.json()) as { orderId: number } };
}

/** An order, then one rolled back: one receipt, for the first. */
async function placeBoth(running: Demo): Promise<void> {
  const placed = await order(running.base);
  expect(placed.status).toBe(201);
  const rolledBack = await order(running.base, '&fail=1');
  expect(rolledBack).toMatchObject({ status: 409, body: { orderId: placed.body.orderId + 1 } });
  const receipt = `notification for ann@example.com: receipt for order ${placed.body.orderId}`;
  await pollUntil(() => running.notifications().includes(receipt), 'the receipt');
  // The rolled-back order's claim came after the first receipt's: both are settled by now.
  await pollUntil(
    () => running.output().includes('"state":"not claimed"'),
    'the rolled-back claim',
  );
  expect(running.notifications()).not.toContain(`receipt for order ${rolledBack.body.orderId}`);
}

function readIfThere(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Makes every job of `queue` that waits for its lease available now, through pg-boss's update(). */
async function endLeases(url: string, queue: string): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
  const { PgBoss } = require('pg-boss') as typeof import('pg-boss');
  const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false });
  boss.on('error', () => undefined);
  await boss.start();
  try {
    for (const job of await boss.findJobs(queue, { queued: true }))
      await boss.update(queue, undefined, { id: job.id, startAfter: 0 });
  } finally {
    await boss.stop({ graceful: false });
  }
}

if (PG_BOSS_NODE) {
  test('without DATABASE_URL: orders and receipts in PGlite inside the demo process', async () => {
    demo = await startDemo({ DATABASE_URL: '' });
    expect(demo.output()).toContain('orders: PGlite in this process');
    await placeBoth(demo);
  }, 60_000);

  describe('with DATABASE_URL', () => {
    let server: PostgresServer;
    beforeAll(async () => {
      server = await startPostgres();
    }, 60_000);
    afterAll(() => server?.stop());

    test('orders and receipts in that PostgreSQL', async () => {
      demo = await startDemo({ DATABASE_URL: server.url });
      expect(demo.output()).toContain('orders: PostgreSQL at DATABASE_URL');
      await placeBoth(demo);
    }, 60_000);

    test('a demo killed during a receipt: `npm run worker` with DATABASE_URL runs the receipt it left', async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'ebt-demo-worker-'));
      // A FIFO nobody reads: the demo's receipt blocks opening it, so the kill comes mid-task.
      const stuck = path.join(dir, 'stuck.fifo');
      execFileSync('mkfifo', [stuck]);
      const workerLog = path.join(dir, 'worker-notifications.log');
      try {
        demo = await startDemo({ DATABASE_URL: server.url, NOTIFICATION_LOG: stuck });
        const placed = await order(demo.base);
        expect(placed.status).toBe(201);
        demo.child.kill('SIGKILL');
        await demo.exited;
        const worker = spawn('npm', ['run', '--silent', 'worker'], {
          cwd: path.join(__dirname, '..'),
          // npm and ts-node run on this Node: its folder comes first on PATH.
          env: {
            ...process.env,
            PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}`,
            DATABASE_URL: server.url,
            NOTIFICATION_LOG: workerLog,
            REDIS_URL: '',
          },
          detached: true,
        });
        let output = '';
        worker.stdout.on('data', (chunk) => (output += chunk));
        worker.stderr.on('data', (chunk) => (output += chunk));
        const exited = new Promise<number | null>((resolve) => worker.on('exit', resolve));
        try {
          const ready = /worker (\d+) taking jobs from pg-boss queue demo-orders/;
          await pollUntil(() => ready.test(output), 'the worker');
          // The lease of the demo's receipt is about 51 s (4 attempts of 10 s, backoff, 10 s margin);
          // a worker taking the job once it ends is shown in pgboss-transactional.test.ts. Here the
          // lease is ended at once, with the call drain() gives a job back with.
          await endLeases(server.url, DEMO_PG_QUEUE);
          const receipt = `notification for ann@example.com: receipt for order ${placed.body.orderId}\n`;
          await pollUntil(
            () => readIfThere(workerLog).includes(receipt),
            "the worker's receipt",
            20_000,
          );
          expect(readIfThere(workerLog)).toBe(receipt);
          // SIGTERM to the worker itself (npm, its parent, would die of it): it exits 0, so npm does.
          process.kill(Number(ready.exec(output)![1]), 'SIGTERM');
          expect(await exited).toBe(0);
        } finally {
          if (worker.exitCode === null) process.kill(-worker.pid!, 'SIGKILL');
        }
        expect(output).toContain('SIGTERM: finishing the running jobs, then exiting');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);
  });
} else {
  test(`pg-boss needs Node ≥ 22.12: on Node ${process.versions.node} the demo starts, says so, and POST /orders answers a plain 501`, async () => {
    demo = await startDemo({ DATABASE_URL: '' });
    expect(demo.output()).toContain(
      'orders: unavailable: express-background-tasks/pg-boss needs Node 22.12 or later',
    );
    const response = await fetch(`${demo.base}/orders`, { method: 'POST' });
    expect(response.status).toBe(501);
    expect(response.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(await response.text()).toMatch(
      /^POST \/orders is not available here\. .*needs Node 22\.12 or later/,
    );
  }, 30_000);
}
