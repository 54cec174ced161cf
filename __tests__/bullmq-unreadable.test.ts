/**
 * Jobs a worker cannot read, against a real redis-server: data that is not JSON (written by a
 * foreign producer, or by hand), JSON that is not what `bullmqDurable` writes, a task no worker
 * runs, a name of a megabyte. Each is failed once, unrecoverable, with one line that names the
 * job id and the reason; none stalls, none is retried, and nothing is logged as a worker error.
 */
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { LOG_MESSAGES, defineTask } from '../lib';
import { MAX_NAME_CHARS } from '../lib/thrown';
import { startWorker, type DurableWorker } from '../lib/bullmq';
import { captureLogger } from './support/capture';
import { startRedis, type RedisServer } from './support/redis';

/** Short locks: a job left active by a worker that could not read it would stall within a second or two. */
const FAST = { lockDuration: 1_000, stalledInterval: 500, maxStalledCount: 1 };
const QUEUE = 'unreadable-tests';
const request = { id: 'req-1', method: 'POST', url: '/', statusCode: 202, aborted: false };
const ran: unknown[] = [];
const known = defineTask('known', (payload: unknown) => void ran.push(payload));

let redis: RedisServer;
let queue: Queue;
let client: Redis;

beforeAll(async () => {
  redis = await startRedis();
  queue = new Queue(QUEUE, { connection: { url: redis.url } });
  client = new Redis(redis.url);
});

afterAll(async () => {
  await queue?.close();
  client?.disconnect();
  await redis?.stop();
});

interface Case {
  /** Adds the job (no worker runs yet) and returns its id. */
  add(): Promise<string>;
  reason: RegExp;
}

const added = async (name: string, data: unknown) => (await queue.add(name, data)).id!;

const cases: Record<string, Case> = {
  'data that is not JSON': {
    async add() {
      const id = await added('known', { payload: 1, request });
      await client.hset(`bull:${QUEUE}:${id}`, 'data', '{"payload": 1, "request": {not json');
      return id;
    },
    reason: /its data is not JSON \(.*JSON/,
  },
  'data that is JSON but not an object': {
    add: () => added('known', 42),
    reason: /its data is not an object \(got number\)/,
  },
  'data without a request': {
    add: () => added('known', { payload: { to: 'a' } }),
    reason: /its data has no request/,
  },
  'a request whose id is not a string': {
    add: () => added('known', { payload: 1, request: { ...request, id: 7 } }),
    reason: /its data's request\.id is not a string/,
  },
  'a task this worker does not run': {
    add: () => added('unknown-task', { payload: 1, request }),
    reason: /no task named "unknown-task" is defined in this worker \(it runs: known\)/,
  },
};

describe.each(Object.entries(cases))('a job with %s', (_name, { add, reason }) => {
  let worker: DurableWorker;
  const log = captureLogger();
  afterEach(async () => {
    await worker?.close();
  });

  test('is failed once, with a line naming its id and the reason; it never stalls nor runs', async () => {
    const id = await add();
    worker = startWorker({
      connection: { url: redis.url },
      queueName: QUEUE,
      tasks: [known],
      logger: log.logger,
      workerOptions: FAST,
    });
    const failed = new Promise<Job | undefined>((resolve) =>
      worker.worker.on('failed', (job) => job?.id === id && resolve(job)),
    );
    const job = (await failed)!;
    expect(job.failedReason).toMatch(reason);
    expect(await queue.getJobState(id)).toBe('failed');
    // Failed for good: BullMQ never takes a job from the failed set again. Read raw: BullMQ's
    // own getJob() would throw on the data that is not JSON.
    const stored = await client.hgetall(`bull:${QUEUE}:${id}`);
    expect({ attemptsMade: stored.atm, stalled: stored.stc ?? '0' }).toEqual({
      attemptsMade: '1',
      stalled: '0',
    });
    const lines = log.find(LOG_MESSAGES.taskFailed);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ jobId: id, error: { name: 'UnrecoverableError' } });
    expect((lines[0].error as { message: string }).message).toMatch(
      new RegExp(`^job ${id} cannot be run: ${reason.source}`),
    );
    expect(log.find(LOG_MESSAGES.taskRetrying)).toEqual([]);
    expect(log.find(LOG_MESSAGES.jobStalled)).toEqual([]);
    expect(log.find(LOG_MESSAGES.workerError)).toEqual([]);
    expect(worker.stats()).toMatchObject({ failed: 1, succeeded: 0, running: 0 });
    expect(ran).toEqual([]);
  });
});

test('a job named with a megabyte is failed with its name and request id clipped in the line and the error', async () => {
  const log = captureLogger();
  const name = `n${'x'.repeat(1024 * 1024)}`;
  const id = await added(name, { payload: 1, request: { ...request, id: 'r'.repeat(100_000) } });
  const worker = startWorker({
    connection: { url: redis.url },
    queueName: QUEUE,
    tasks: [known],
    logger: log.logger,
  });
  try {
    await new Promise<void>((resolve) =>
      worker.worker.on('failed', (job) => job?.id === id && resolve()),
    );
  } finally {
    await worker.close();
  }
  const [line] = log.find(LOG_MESSAGES.taskFailed);
  // Compared as booleans and lengths: a failure must not print a megabyte.
  const cut = `${name.slice(0, MAX_NAME_CHARS)}… [cut: ${name.length} characters in all]`;
  expect(line.task === cut).toBe(true);
  const cutId = `${'r'.repeat(MAX_NAME_CHARS)}… [cut: 100000 characters in all]`;
  expect(line.requestId === cutId).toBe(true);
  expect((line.error as { message: string }).message.includes(`no task named "${cut}"`)).toBe(true);
  expect(line.line.length).toBeLessThan(4 * 8_192);
});
