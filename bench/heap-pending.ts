/**
 * Heap per pending task (child process entry, run with --expose-gc): tasks wait behind
 * `concurrency: 1` while one task holds the only slot, and the heap is compared, after GC,
 * with the heap before they were added. The fake req/res objects are made before the first
 * measurement, so only what the suite keeps per task (and per request) is counted.
 *
 * For information, the same for running tasks: one async task per request, all running at once
 * (each awaiting a timer), next to the hand-written `Promise.resolve().then(task)`. What a running
 * task holds is what a slow task keeps alive across garbage collections (scenario 6).
 *
 * Usage: heap-pending.ts <tasks>
 */
import './native-stacks';
import { backgroundTasks } from '../lib';
import { childMain } from './children';
import { heapAfterGc } from './heap';
import { fakeExchange, next, type FakeExchange } from './fake-http';
import { silentLogger } from './logger';

export interface PendingRow {
  label: string;
  tasks: number;
  bytesPerTask: number;
  /** Judged against the ≤ 1 KB target (pending tasks); the running rows are for information. */
  pending: boolean;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
function noop(): void {}

async function measure(label: string, total: number, perRequest: number): Promise<PendingRow> {
  const bg = backgroundTasks({ logger: silentLogger(), concurrency: 1, maxPending: Infinity });
  let release!: () => void;
  const blocker = fakeExchange();
  bg(blocker.req, blocker.res, next);
  blocker.res.locals.backgroundTasks.add(() => new Promise<void>((resolve) => (release = resolve)));
  await tick();
  if (bg.stats().running !== 1) throw new Error('the blocking task is not running');
  const exchanges: FakeExchange[] = Array.from({ length: total / perRequest }, fakeExchange);
  const before = heapAfterGc();
  for (const { req, res } of exchanges) {
    bg(req, res, next);
    for (let t = 0; t < perRequest; t++) res.locals.backgroundTasks.add(noop);
  }
  await tick(); // the responses count as ended: the queues line up for the slot
  const after = heapAfterGc();
  if (bg.stats().pending !== total)
    throw new Error(`expected ${total} pending, got ${bg.stats().pending}`);
  release();
  await bg.idle();
  return { label, tasks: total, bytesPerTask: (after - before) / total, pending: true };
}

/** Heap per running async task, one per request; or for the hand-written equivalent. */
async function running(label: string, total: number, suite: boolean): Promise<PendingRow> {
  const waiting: Array<() => void> = [];
  const task = () => new Promise<void>((resolve) => waiting.push(resolve)); // runs until released
  const logger = silentLogger();
  const bg = backgroundTasks({ logger, concurrency: Infinity, maxPending: Infinity });
  const exchanges: FakeExchange[] = Array.from({ length: total }, fakeExchange);
  const before = heapAfterGc();
  for (const { req, res } of exchanges) {
    if (suite) {
      bg(req, res, next);
      res.locals.backgroundTasks.add(task);
    } else {
      Promise.resolve()
        .then(task)
        .catch((error: unknown) => logger.error('background task failed', { error }));
    }
  }
  await tick();
  const after = heapAfterGc();
  if (waiting.length !== total) throw new Error(`expected ${total} running, got ${waiting.length}`);
  for (const resolve of waiting) resolve();
  await bg.idle();
  return { label, tasks: total, bytesPerTask: (after - before) / total, pending: false };
}

async function main(): Promise<PendingRow[]> {
  const total = Number(process.argv[2]);
  return [
    await measure('pending, all in one request', total, total),
    await measure('pending, one per request (queue, request id, place in line)', total, 1),
    await running('running async, hand-written Promise.then(task) (for information)', total, false),
    await running('running async, one per request (for information)', total, true),
  ];
}

childMain(main);
