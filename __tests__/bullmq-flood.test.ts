/**
 * Workers and a producer against a real redis-server that refuses them: one full at `maxmemory`
 * under `noeviction`, one that wants another password. Each refusal is an 'error' event, and
 * refusals go on (a worker refused asks again after a wait that grows to 5 s: paced-worker.ts;
 * ioredis reconnects after a wrong password); the log gets one line per error a minute, and
 * closing tells how many were not logged.
 */
import { LOG_MESSAGES } from '../lib';
import { bullmqDurable, startWorker, type DurableWorker } from '../lib/bullmq';
import { captureLogger, type CapturedLogger } from './support/capture';
import { recordTask } from './support/durable-tasks';
import { fillUp, startRedis, type RedisServer } from './support/redis';

const OBSERVED_MS = 30_000;
const OOM = /^OOM command not allowed when used memory > 'maxmemory'/;
const WRONGPASS = /^WRONGPASS/;

let full: RedisServer;
let locked: RedisServer;

beforeAll(async () => {
  [full, locked] = await Promise.all([
    startRedis(['--maxmemory', '2mb', '--maxmemory-policy', 'noeviction']),
    startRedis(['--requirepass', 'the-right-one']),
  ]);
  expect((await fillUp(full.url)).message).toMatch(OOM);
});

afterAll(async () => {
  await Promise.all([full?.stop(), locked?.stop()]);
});

/** A worker with its own captured log, and a count of its BullMQ 'error' events matching `kind`. */
function watchedWorker(url: string, queueName: string, kind: RegExp) {
  const log = captureLogger();
  const worker = startWorker({
    connection: { url },
    queueName,
    tasks: [recordTask],
    logger: log.logger,
  });
  const counted = { matching: 0, other: [] as string[] };
  worker.worker.on('error', (error) => {
    if (kind.test(error.message)) counted.matching += 1;
    else counted.other.push(error.message);
  });
  return { log, worker, counted };
}

/** Resolves once the worker has had `count` 'error' events matching `kind`. */
function errorsSeen(worker: DurableWorker, kind: RegExp, count: number): Promise<void> {
  let seen = 0;
  return new Promise((resolve) => {
    const onError = (error: Error) => {
      if (!kind.test(error.message) || (seen += 1) < count) return;
      worker.worker.off('error', onError);
      resolve();
    };
    worker.worker.on('error', onError);
  });
}

const errorLines = (log: CapturedLogger) => log.records.filter((line) => line.level === 'error');

test(
  'two idle workers at maxmemory: at most 10 lines in 30 s, saying Redis is out of memory; closing tells the count of the rest',
  async () => {
    const watched = [1, 2].map(() => watchedWorker(full.url, 'full', OOM));
    await Promise.all(watched.map(({ worker }) => worker.worker.waitUntilReady()));

    await new Promise((resolve) => setTimeout(resolve, OBSERVED_MS));
    const lines = watched.flatMap(({ log }) => errorLines(log));
    expect(lines.length).toBeLessThanOrEqual(10);
    for (const line of lines) {
      expect(line).toMatchObject({
        message: LOG_MESSAGES.redisOutOfMemory,
        queue: 'full',
        side: 'worker',
        error: { name: 'ReplyError', message: expect.stringMatching(OOM) },
      });
    }
    // The rule, not a quiet Redis, kept the log short: each worker was refused over and over:
    // asking for a job 11 times in 30 s (at 0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3 s, then every 5 s),
    // and checking for stalled jobs once.
    for (const { counted } of watched) {
      expect(counted.other).toEqual([]);
      expect(counted.matching).toBeGreaterThanOrEqual(10);
    }

    await Promise.all(watched.map(({ worker }) => worker.close()));
    for (const { log, counted } of watched) {
      // Within the minute, one line; on close, one more with the count of all the others.
      expect(errorLines(log).map((line) => [line.message, line.repeats])).toEqual([
        [LOG_MESSAGES.redisOutOfMemory, undefined],
        [LOG_MESSAGES.redisOutOfMemory, counted.matching - 1],
      ]);
    }
  },
  OBSERVED_MS + 30_000,
);

test('a worker with a wrong password: one line however many refusals, and close() ends it and tells their count', async () => {
  const url = `redis://:wrong@127.0.0.1:${locked.port}`;
  const { log, worker, counted } = watchedWorker(url, 'locked', WRONGPASS);
  await errorsSeen(worker, WRONGPASS, 5);
  expect(errorLines(log)).toEqual([
    expect.objectContaining({
      message: LOG_MESSAGES.workerError,
      side: 'worker',
      error: expect.objectContaining({ message: expect.stringMatching(WRONGPASS) }),
    }),
  ]);

  // BullMQ's own close() would wait forever for a connection that never became ready.
  await worker.close();
  expect(counted.other).toEqual([]);
  expect(errorLines(log).map((line) => [line.message, line.repeats])).toEqual([
    [LOG_MESSAGES.workerError, undefined],
    [LOG_MESSAGES.workerError, counted.matching - 1],
  ]);
});

test('a producer with a wrong password: one line while it retries, and close() tells the count of the rest', async () => {
  const log = captureLogger();
  const url = `redis://:wrong@127.0.0.1:${locked.port}`;
  const durable = bullmqDurable({ connection: { url }, queueName: 'locked', logger: log.logger });
  const job = { name: 'record', payload: { id: 'p' }, timeoutMs: 0, retries: 0, retryDelayMs: 0 };
  const request = { id: 'r', method: 'POST', url: '/', statusCode: 202, aborted: false };
  await expect(durable.enqueue({ ...job, request })).rejects.toThrow(WRONGPASS);
  // ioredis reconnects on its own schedule, with nothing to wait on: an explicit window.
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  expect(errorLines(log)).toHaveLength(1);

  await durable.close();
  const lines = errorLines(log);
  expect(lines).toHaveLength(2);
  expect(lines[1]).toMatchObject({
    message: LOG_MESSAGES.workerError,
    side: 'producer',
    error: { message: expect.stringMatching(WRONGPASS) },
    repeats: expect.any(Number),
  });
  expect(lines[1].repeats).toBeGreaterThan(0);
});
