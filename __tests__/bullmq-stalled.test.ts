/**
 * Jobs whose worker process was killed (SIGKILL) mid-run, with real worker processes and a real
 * redis-server. BullMQ 6.7's stalled checker, in whichever worker is alive, only moves such a
 * job back to wait; one stalled too often is marked there and failed, unrun, by the worker that
 * takes it next. The tests check what that worker logs, and what a re-run sees as its attempt.
 */
import { Queue } from 'bullmq';
import { LOG_MESSAGES } from '../lib';
import { bullmqDurable } from '../lib/bullmq';
import { pollUntil, startRedis, type RedisServer } from './support/redis';
import {
  collect,
  killAllWorkers,
  spawnWorker,
  type ChildEvent,
  type WorkerChild,
} from './support/worker-child';

/** Short locks, so that a killed worker's job is noticed within about two seconds rather than a minute. */
const FAST = { lockDuration: 1_000, stalledInterval: 500 };
const STALLED_OUT = 'job stalled more than allowable limit';

let redis: RedisServer;
const closing: Array<{ close(): Promise<unknown> }> = [];

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await killAllWorkers();
  await Promise.all(closing.map((item) => item.close()));
  await redis?.stop();
});

/** Adds a `stall` job with the request id `requestId` and returns its job id. */
async function addStallJob(queueName: string, id: string, requestId: string): Promise<string> {
  const durable = bullmqDurable({ connection: { url: redis.url }, queueName });
  const request = { id: requestId, method: 'POST', url: '/', statusCode: 202, aborted: false };
  try {
    const job = { name: 'stall', payload: { id }, timeoutMs: 0, retries: 0, retryDelayMs: 0 };
    return await durable.enqueue({ ...job, request });
  } finally {
    await durable.close();
  }
}

/** Starts a worker whose `stall` task never ends, waits for it to start job `id`, and kills it. */
async function killMidRun(
  queueName: string,
  id: string,
  workerOptions: object,
  attempt: number,
  add?: () => Promise<unknown>,
): Promise<WorkerChild> {
  const doomed = await spawnWorker({ redisUrl: redis.url, queueName, workerOptions, hang: true });
  await add?.();
  const started = await doomed.next(
    (e) => e.event === 'started' && e.id === id,
    `job ${id} to start in worker ${doomed.pid}`,
  );
  expect(started.attempt).toBe(attempt);
  await doomed.kill();
  return doomed;
}

async function jobState(queueName: string, jobId: string): Promise<string> {
  const queue = new Queue(queueName, { connection: { url: redis.url } });
  closing.push(queue);
  return queue.getJobState(jobId);
}

const logged = (workers: WorkerChild[], message: string) =>
  workers.flatMap((worker) =>
    worker.events.filter((e) => e.event === 'log' && e.message === message),
  );
const ranHere = (workers: WorkerChild[], id: string) =>
  workers.flatMap((worker) => worker.events.filter((e) => e.id === id && e.event !== 'log'));

test('a job stalled more than maxStalledCount (0) is logged as failed once, with its jobId, onTaskError called once, and not run again', async () => {
  const queueName = 'stalled-out';
  const workerOptions = { ...FAST, maxStalledCount: 0 };
  let jobId = '';
  await killMidRun(queueName, 'refund-1', workerOptions, 1, async () => {
    jobId = await addStallJob(queueName, 'refund-1', 'req-refund-1');
  });

  // Two live workers: the stalled check runs in one, the job may be failed in the other.
  const rescuers = await Promise.all([
    spawnWorker({ redisUrl: redis.url, queueName, workerOptions }),
    spawnWorker({ redisUrl: redis.url, queueName, workerOptions }),
  ]);
  await collect(rescuers, (e) => e.event === 'taskError', 1);
  await pollUntil(async () => (await jobState(queueName, jobId)) === 'failed', 'the job to fail');
  // Stopped, they have said all they will say about the job.
  await Promise.all(rescuers.map((worker) => worker.stop()));

  const failed = logged(rescuers, LOG_MESSAGES.taskFailed);
  expect(failed).toEqual([
    expect.objectContaining({
      level: 'error',
      task: 'stall',
      jobId,
      requestId: 'req-refund-1',
      attempt: 1,
      error: expect.objectContaining({ name: 'UnrecoverableError', message: STALLED_OUT }),
    }),
  ]);
  const hooked = rescuers.flatMap((worker) => worker.events.filter((e) => e.event === 'taskError'));
  expect(hooked).toEqual([
    expect.objectContaining({ task: 'stall', jobId, attempt: 1, message: STALLED_OUT }),
  ]);
  expect(logged(rescuers, LOG_MESSAGES.jobStalled)).toEqual([
    expect.objectContaining({ level: 'warn', jobId }),
  ]);
  expect(ranHere(rescuers, 'refund-1')).toEqual([]);
}, 60_000);

test('maxStalledCount 1: the run after the first kill sees ctx.attempt 2; after the second kill the job fails, logged with attempt 2', async () => {
  const queueName = 'stalled-twice';
  const workerOptions = { ...FAST, maxStalledCount: 1 };
  let jobId = '';
  const first = await killMidRun(queueName, 'invoice-2', workerOptions, 1, async () => {
    jobId = await addStallJob(queueName, 'invoice-2', 'req-invoice-2');
  });
  // Started a second time, in a worker that also hangs: its ctx counts the killed run.
  const second = await killMidRun(queueName, 'invoice-2', workerOptions, 2);

  const last = await spawnWorker({ redisUrl: redis.url, queueName, workerOptions });
  const [hook] = await collect([last], (e) => e.event === 'taskError', 1);
  await last.stop();
  expect(hook).toMatchObject({ jobId, attempt: 2, message: STALLED_OUT });
  expect(logged([last], LOG_MESSAGES.taskFailed)).toEqual([
    expect.objectContaining({ level: 'error', jobId, attempt: 2, requestId: 'req-invoice-2' }),
  ]);
  expect(ranHere([last], 'invoice-2')).toEqual([]);
  const starts = ranHere([first, second], 'invoice-2') as Array<ChildEvent & { pid: number }>;
  expect(starts.map((e) => [e.event, e.attempt, e.pid])).toEqual([
    ['started', 1, first.pid],
    ['started', 2, second.pid],
  ]);
}, 60_000);

test("a re-run's failure after a kill is logged with the attempt that counts the killed run", async () => {
  const queueName = 'stalled-then-failed';
  let jobId = '';
  await killMidRun(queueName, 'mail-3', FAST, 1, async () => {
    jobId = await addStallJob(queueName, 'mail-3', 'req-mail-3');
  });
  // This worker does not know the task: the re-run fails at once, in the job runner.
  const rescuer = await spawnWorker({
    redisUrl: redis.url,
    queueName,
    workerOptions: FAST,
    tasks: ['record'],
  });
  const [hook] = await collect([rescuer], (e) => e.event === 'taskError', 1);
  await rescuer.stop();
  expect(hook).toMatchObject({ jobId, attempt: 2 });
  expect(logged([rescuer], LOG_MESSAGES.taskFailed)).toEqual([
    expect.objectContaining({
      jobId,
      attempt: 2,
      error: expect.objectContaining({ message: expect.stringMatching(/no task named "stall"/) }),
    }),
  ]);
}, 60_000);
