/**
 * A worker that Redis refuses (a real redis-server full at `maxmemory` under `noeviction`) waits
 * before asking for a job again: 100 ms after the first refusal, twice as long after each, up to
 * 5 s; meanwhile it costs little CPU and few Redis commands, and close() or pause() end a wait.
 * Once Redis takes writes again, a job added is run within that cap, and the waits start over.
 */
import { EventEmitter, once } from 'node:events';
import { Redis } from 'ioredis';
import { defineTask } from '../lib';
import { bullmqDurable, startWorker, type DurableWorker } from '../lib/bullmq';
import { MAX_RETRY_DELAY_MS, retryDelayMs } from '../lib/bullmq/paced-worker';
import { captureLogger } from './support/capture';
import { fillUp, freeUp, startRedis, type RedisServer } from './support/redis';

const OOM = /^OOM command not allowed when used memory > 'maxmemory'/;
/** Refusals until the waits reach the cap: 100, 200, 400, 800, 1,600, 3,200 ms, then 5 s. */
const REFUSALS_TO_CAP = 7;
/** Timers may fire up to a millisecond early, as measured by performance.now(). */
const TIMER_SLACK_MS = 2;

let redis: RedisServer;

beforeAll(async () => {
  redis = await startRedis(['--maxmemory', '2mb', '--maxmemory-policy', 'noeviction']);
});

afterAll(async () => {
  await redis?.stop();
});

/** Fills Redis up again, from inside the worker, and says when it is full. */
const refills = new EventEmitter();
const refillTask = defineTask('refill', async () => {
  await fillUp(redis.url);
  refills.emit('full', performance.now());
});

/**
 * A worker on a full Redis, and the times at which Redis refused its requests for a job. Those are
 * told by their script, the one of the first refusal: the worker sends nothing else before it
 * asks for a job, and it runs no stalled-job check (a script that Redis would refuse too). One job
 * at a time, so that it asks for the next job once a job ends, not while it runs.
 */
function refusedWorker(queueName: string) {
  const worker = startWorker({
    connection: { url: redis.url },
    queueName,
    tasks: [refillTask],
    logger: captureLogger().logger,
    concurrency: 1,
    workerOptions: { skipStalledCheck: true },
  });
  const refusedAt: number[] = [];
  const other: string[] = [];
  let requestScript: string | undefined;
  worker.worker.on('error', (error) => {
    const script = /script: (\w+)/.exec(error.message)?.[1];
    requestScript ??= script;
    if (OOM.test(error.message) && script === requestScript) refusedAt.push(performance.now());
    else other.push(error.message);
  });
  return { worker, refusedAt, other };
}

/** Resolves once `refusedAt` holds `count` times. */
async function refusals(worker: DurableWorker, refusedAt: number[], count: number): Promise<void> {
  while (refusedAt.length < count) {
    await new Promise((resolve) => worker.worker.once('error', resolve));
  }
}

/**
 * Resolves once BullMQ's loop, which goes on in microtasks after a refusal, has come back to its
 * next request for a job: to the wait before it.
 */
const nextRequestWaiting = () => new Promise((resolve) => setImmediate(resolve));

/** The gaps between consecutive times. */
const gaps = (times: number[]) => times.slice(1).map((time, i) => time - times[i]!);

/** Redis's count of the commands it ran, less the INFO that reads it. */
async function commandsRun(admin: Redis): Promise<number> {
  const info = await admin.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)![1]);
}

test('the waits: 100 ms after one refusal, doubling, at most 5 s; none once Redis answers', () => {
  expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 50].map(retryDelayMs)).toEqual([
    0, 100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000,
  ]);
});

test('refused, the worker waits 100 ms, then twice as long each time, using little CPU and few Redis commands; close() ends the wait', async () => {
  expect((await fillUp(redis.url)).message).toMatch(OOM);
  const admin = new Redis(redis.url);
  const { worker, refusedAt, other } = refusedWorker('paced');
  try {
    await refusals(worker, refusedAt, 1);
    const commandsBefore = await commandsRun(admin);
    const cpuBefore = process.cpuUsage();
    const startedAt = performance.now();

    await refusals(worker, refusedAt, REFUSALS_TO_CAP);
    const cpu = process.cpuUsage(cpuBefore);
    const seconds = (performance.now() - startedAt) / 1_000;
    const commands = (await commandsRun(admin)) - commandsBefore - 1;

    expect(other).toEqual([]);
    gaps(refusedAt.slice(0, REFUSALS_TO_CAP)).forEach((gap, i) =>
      expect(gap).toBeGreaterThanOrEqual(retryDelayMs(i + 1) - TIMER_SLACK_MS),
    );
    // Each request for a job is 3 commands (EVALSHA and the 2 reads of its script before the
    // refused write): about 3 a second here. Without the waits: about 28,000 a second, and a core.
    expect(commands / seconds).toBeLessThan(20);
    expect((cpu.user + cpu.system) / 1_000 / (seconds * 1_000)).toBeLessThan(0.1);

    // The next wait is the longest: close() does not sit it out.
    await nextRequestWaiting();
    const closing = performance.now();
    await worker.close();
    expect(performance.now() - closing).toBeLessThan(MAX_RETRY_DELAY_MS / 2);
  } finally {
    await worker.close();
    admin.disconnect();
  }
}, 30_000);

test('pause() does not sit out the wait either', async () => {
  expect((await fillUp(redis.url)).message).toMatch(OOM);
  const { worker, refusedAt } = refusedWorker('pausing');
  try {
    await refusals(worker, refusedAt, REFUSALS_TO_CAP);
    await nextRequestWaiting();
    const pausing = performance.now();
    await worker.worker.pause();
    expect(performance.now() - pausing).toBeLessThan(MAX_RETRY_DELAY_MS / 2);
  } finally {
    await worker.close();
  }
}, 30_000);

test('once Redis takes writes again, a job added is run within the 5 s cap; refused again, it asks at once: the waits start over', async () => {
  expect((await fillUp(redis.url)).message).toMatch(OOM);
  const { worker, refusedAt } = refusedWorker('recovering');
  const log = captureLogger();
  const durable = bullmqDurable({
    connection: { url: redis.url },
    queueName: 'recovering',
    logger: log.logger,
  });
  try {
    await refusals(worker, refusedAt, REFUSALS_TO_CAP);
    // The worker is waiting its longest: 5 s.
    expect(gaps(refusedAt).at(-1)).toBeGreaterThanOrEqual(retryDelayMs(6) - TIMER_SLACK_MS);

    await freeUp(redis.url);
    const freedAt = performance.now();
    const refilled = once(refills, 'full') as Promise<[number]>;
    const request = { id: 'r', method: 'POST', url: '/', statusCode: 202, aborted: false };
    await durable.enqueue({
      name: 'refill',
      payload: {},
      timeoutMs: 0,
      retries: 0,
      retryDelayMs: 0,
      request,
    });
    const [refilledAt] = await refilled;
    expect(refilledAt - freedAt).toBeLessThan(MAX_RETRY_DELAY_MS + 3_000);

    // The task filled Redis again; the job taken reset the waits, so the worker's next request
    // for a job is refused at once (the job's add left a wake-up for it), not after 5 s.
    const before = refusedAt.length;
    await refusals(worker, refusedAt, before + 1);
    expect(refusedAt[before]! - refilledAt).toBeLessThan(MAX_RETRY_DELAY_MS / 2);
  } finally {
    await Promise.all([worker.close(), durable.close()]);
  }
}, 40_000);
