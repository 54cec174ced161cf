/**
 * The kill -9 load test of addInTransaction() (issue 15): 1,000 requests, each writing an order
 * row and its receipt task in one transaction, a fifth of them rolled back; the web process is
 * killed with SIGKILL at random moments and restarted, 5 times, while a worker runs. Then every
 * committed order's receipt has run at least once, no rolled-back order's has, and the duplicates
 * are counted and printed. The randomness is seeded (KILL_SEED to replay a run); the seed is printed.
 */
import pg from 'pg';
import { killAllJsonChildren, spawnJsonChild, type JsonChild } from './support/json-child';
import { describePgBoss } from './support/pgboss-node';
import { SCHEMA, closeTaskPool, sendReceipt } from './support/pgboss-tasks';
import { startPostgres, type PostgresServer } from './support/postgres';
import { pollUntil } from './support/redis';

const REQUESTS = 1_000;
const KILLS = 5;
const IN_FLIGHT = 10;

/** mulberry32: a small seeded generator, so that a failing run can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describePgBoss('kill -9 under load', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
  const { startWorker } = require('../lib/pg-boss') as typeof import('../lib/pg-boss');
  let server: PostgresServer;
  let pool: pg.Pool;

  beforeAll(async () => {
    server = await startPostgres();
    process.env.PGBOSS_TEST_DATABASE_URL = server.url;
    pool = new pg.Pool({ connectionString: server.url, max: 4 });
    await pool.query(SCHEMA);
  }, 60_000);

  afterAll(async () => {
    await killAllJsonChildren();
    await closeTaskPool();
    await pool?.end();
    await server?.stop();
  });

  test(`${REQUESTS} requests, a fifth rolled back, the web process killed ${KILLS} times: every committed order's task ran, no rolled-back one's`, async () => {
    const seed = Number(process.env.KILL_SEED ?? Date.now() % 2 ** 31);
    const next = random(seed);
    process.stdout.write(`kill -9 load test: seed ${seed} (KILL_SEED=${seed} replays it)\n`);
    const queueName = 'orders-under-kill';
    const worker = await startWorker({
      connectionString: server.url,
      queueName,
      tasks: [sendReceipt],
      concurrency: 4,
      workOptions: { pollingIntervalSeconds: 0.5 },
    });
    const startWeb = async (): Promise<{ child: JsonChild; port: number }> => {
      const child = spawnJsonChild('__tests__/support/pgboss-web-child.ts', {
        PGBOSS_TEST_DATABASE_URL: server.url,
        QUEUE_NAME: queueName,
        LEASE_MARGIN_MS: '300',
      });
      const { port } = await child.next((event) => event.event === 'listening', 'listening');
      return { child, port: port as number };
    };
    // The request numbers after which the web process is killed, at a random moment of the next ones.
    const killAt = Array.from({ length: KILLS }, () => 100 + Math.floor(next() * 850)).sort(
      (a, b) => a - b,
    );
    let web = await startWeb();
    const webPids = [web.child.pid];
    const answered = { committed: 0, rolledBack: 0, cut: 0 };
    let sent = 0;
    const inFlight = new Set<Promise<void>>();
    while (sent < REQUESTS) {
      if (killAt.length > 0 && sent >= killAt[0]) {
        killAt.shift();
        // A random moment: mid-request, mid-commit, mid-claim or mid-task.
        await new Promise((resolve) => setTimeout(resolve, next() * 30));
        await web.child.kill();
        await Promise.all(inFlight);
        web = await startWeb();
        webPids.push(web.child.pid);
      }
      const mode = next() < 0.2 ? 'rollback' : 'commit';
      const target = web.port;
      sent++;
      const call = fetch(`http://127.0.0.1:${target}/orders?mode=${mode}`, { method: 'POST' })
        .then(async (response) => {
          await response.arrayBuffer();
          if (response.status === 201) answered.committed++;
          else if (response.status === 409) answered.rolledBack++;
          else throw new Error(`unexpected ${response.status}`);
        })
        .catch((error: Error) => {
          if (error.message !== 'fetch failed') throw error;
          answered.cut++;
        })
        .finally(() => inFlight.delete(call));
      inFlight.add(call);
      if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);

    const count = async (sql: string) => Number((await pool.query<{ n: string }>(sql)).rows[0].n);
    const orders = await count('SELECT count(*) AS n FROM orders');
    const missing = () =>
      count(
        'SELECT count(*) AS n FROM orders o WHERE NOT EXISTS (SELECT 1 FROM receipts r WHERE r.order_id = o.id)',
      );
    await pollUntil(
      async () => (await missing()) === 0,
      'every committed order to have its receipt',
      90_000,
    );
    const orphans = await count(
      'SELECT count(*) AS n FROM receipts r WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = r.order_id)',
    );
    const receipts = await count('SELECT count(*) AS n FROM receipts');
    const duplicates = await count('SELECT count(*) - count(DISTINCT order_id) AS n FROM receipts');
    const byWorker = await count(`SELECT count(*) AS n FROM receipts WHERE pid = ${process.pid}`);
    const rolledBackIds = await count(
      'SELECT (SELECT last_value FROM orders_id_seq) - count(*) AS n FROM orders',
    );
    await worker.close();
    await web.child.kill();
    process.stdout.write(
      `kill -9 load test (seed ${seed}): ${sent} requests (${answered.committed} answered committed, ` +
        `${answered.rolledBack} rolled back, ${answered.cut} cut by a kill), ${webPids.length - 1} kills; ` +
        `${orders} committed orders, ${rolledBackIds} order ids rolled back or lost with their process; ` +
        `${receipts} receipts: ${receipts - byWorker} by the web processes, ${byWorker} by the worker; ` +
        `${duplicates} duplicates; 0 orders without a receipt; ${orphans} receipts of rolled-back orders\n`,
    );
    expect(sent).toBe(REQUESTS);
    expect(webPids).toHaveLength(KILLS + 1);
    expect(await missing()).toBe(0);
    expect(orphans).toBe(0);
    expect(answered.rolledBack).toBeGreaterThan(0);
    expect(receipts).toBe(orders + duplicates);
  }, 240_000);
});
