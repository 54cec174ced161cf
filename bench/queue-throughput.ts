/**
 * Queue micro-benchmark (child process entry): how many no-op tasks per second go through the
 * public API, `add()` and the run that follows, with no HTTP at all. It drives the middleware
 * with fake minimal req/res objects (bench/fake-http.ts) whose response counts as finished, so
 * what is timed is the suite: the per-request queue, add(), on-finished, the runner. Wall time,
 * in five equal parts; the median part is reported.
 *
 * Usage: queue-throughput.ts <tasks>
 */
import './native-stacks';
import { backgroundTasks } from '../lib';
import { childMain } from './children';
import { fakeExchange, next } from './fake-http';
import { silentLogger, taskFailureLog } from './logger';
import { median } from './stats';

export interface ThroughputRow {
  label: string;
  tasks: number;
  tasksPerSecond: number;
  nsPerTask: number;
}

function noop(): void {}
function asyncNoop(): Promise<void> {
  return Promise.resolve();
}

/** Pushes `total` tasks through, `perRequest` per fake request, draining every `chunk` requests. */
async function run(
  label: string,
  total: number,
  perRequest: number,
  task: () => unknown,
): Promise<ThroughputRow> {
  const bg = backgroundTasks({ logger: silentLogger(), maxPending: Infinity });
  const requests = total / perRequest;
  const chunk = Math.max(1, Math.floor(10_000 / perRequest));
  const once = async (count: number) => {
    for (let done = 0; done < count; done += chunk) {
      for (let r = 0; r < Math.min(chunk, count - done); r++) {
        const { req, res } = fakeExchange();
        bg(req, res, next);
        const tasks = res.locals.backgroundTasks;
        for (let t = 0; t < perRequest; t++) tasks.add(task);
      }
      await bg.idle();
    }
  };
  await once(Math.ceil(requests / 10)); // warm-up
  const nsPerTask = await timedParts(total, (part) => once(part / perRequest));
  const stats = bg.stats();
  if (stats.pending !== 0 || stats.running !== 0) throw new Error(`${label}: tasks left over`);
  return { label, tasks: total, tasksPerSecond: 1e9 / nsPerTask, nsPerTask };
}

/**
 * Runs `total` tasks as PARTS equal parts, timing each, and returns the median ns per task: a
 * part slowed down by another process on a shared machine does not move the result.
 */
const PARTS = 5;
async function timedParts(total: number, run: (tasks: number) => Promise<void>): Promise<number> {
  const perPart: number[] = [];
  for (let i = 0; i < PARTS; i++) {
    const start = process.hrtime.bigint();
    await run(total / PARTS);
    perPart.push(Number(process.hrtime.bigint() - start) / (total / PARTS));
  }
  return median(perPart);
}

/** The hand-written reference: the same no-op through Promise.resolve().then(task).catch(log). */
async function handWritten(total: number): Promise<ThroughputRow> {
  const log = taskFailureLog(silentLogger());
  const once = async (count: number) => {
    for (let done = 0; done < count; done += 10_000) {
      const all: Promise<unknown>[] = [];
      for (let i = 0; i < 10_000; i++) all.push(Promise.resolve().then(noop).catch(log));
      await Promise.all(all);
    }
  };
  await once(total / 10);
  const nsPerTask = await timedParts(total, once);
  return {
    label: 'reference: Promise.resolve().then(task).catch(log)',
    tasks: total,
    tasksPerSecond: 1e9 / nsPerTask,
    nsPerTask,
  };
}

async function main(): Promise<ThroughputRow[]> {
  const total = Number(process.argv[2]);
  return [
    await run('sync no-op, 100 tasks per request', total, 100, noop),
    await run('sync no-op, 1 task per request', total, 1, noop),
    await run('async no-op (timer path), 100 per request', total, 100, asyncNoop),
    await handWritten(total),
  ];
}

childMain(main);
