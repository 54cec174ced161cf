/**
 * The demo's `POST /orders` as a real child process: an order and its receipt in one
 * transaction, `?fail=1` rolled back with no receipt; in PGlite inside the process (no
 * DATABASE_URL) and on a PostgreSQL server (DATABASE_URL). On a Node where pg-boss cannot load
 * (Node 20), the demo still starts, says so, and the route answers a plain-text 501.
 */
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
