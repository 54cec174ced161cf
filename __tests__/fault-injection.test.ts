/**
 * Fault injection: property-based sequences of tasks that resolve, reject, throw, throw
 * non-Errors, hang past the timeout, succeed on a retry or add more tasks, across many requests.
 * After idle() every task is accounted for, each failure has exactly one final log line, and
 * nothing escaped as an unhandled rejection or uncaught exception (Jest fails the test that
 * was running when one does).
 */
import express from 'express';
import fc from 'fast-check';
import request from 'supertest';
import {
  LOG_MESSAGES,
  type BackgroundTasks,
  type BackgroundTasksStats,
  type TaskObject,
} from '../lib';
import { makeApp } from './support/apps';

const BEHAVIOURS = [
  'resolve',
  'resolveLater',
  'reject',
  'throwSync',
  'throwNonError',
  'rejectNonError',
  'hang',
  'failOnce',
  'spawn',
] as const;
type Behaviour = (typeof BEHAVIOURS)[number];

const TIMEOUT_MS = 15;

/** The task for a behaviour; `spawn` adds a task that resolves to the same queue. */
function taskFor(behaviour: Behaviour, tasks: BackgroundTasks, added: () => void): TaskObject {
  const run: Record<Behaviour, TaskObject['run']> = {
    resolve: () => undefined,
    resolveLater: () => new Promise((resolve) => setImmediate(resolve)),
    reject: () => Promise.reject(new Error('rejected')),
    throwSync: () => {
      throw new Error('thrown');
    },
    throwNonError: () => {
      throw { not: 'an error' };
    },
    rejectNonError: () => Promise.reject('a string'),
    hang: () => new Promise(() => undefined),
    failOnce: ({ attempt }) =>
      attempt === 1 ? Promise.reject(new Error('first attempt')) : undefined,
    spawn: () => {
      added();
      tasks.add({ name: 'spawned', run: () => undefined });
    },
  };
  return { name: behaviour, run: run[behaviour] };
}

/** What the counters must say when no task is rejected. */
function expectedOutcome(plans: Behaviour[][], retries: number) {
  const outcome = { succeeded: 0, failed: 0, timedOut: 0 };
  for (const behaviour of plans.flat()) {
    if (['resolve', 'resolveLater'].includes(behaviour)) outcome.succeeded++;
    else if (behaviour === 'spawn') outcome.succeeded += 2;
    else if (behaviour === 'hang') outcome.timedOut++;
    else if (behaviour === 'failOnce') outcome[retries > 0 ? 'succeeded' : 'failed']++;
    else outcome.failed++;
  }
  return outcome;
}

const total = (s: BackgroundTasksStats) =>
  s.pending +
  s.running +
  s.succeeded +
  s.failed +
  s.timedOut +
  s.rejected +
  s.abandoned +
  s.enqueued;

async function runPlans(
  plans: Behaviour[][],
  options: { retries: number; concurrency: number; maxPending: number },
) {
  let added = 0;
  const countAdded = () => void added++;
  const { app, bg, log } = makeApp(
    express,
    (app) => {
      app.get('/plan/:i', (req, res) => {
        const tasks = res.locals.backgroundTasks;
        for (const behaviour of plans[Number(req.params.i)]) {
          countAdded();
          tasks.add(taskFor(behaviour, tasks, countAdded));
        }
        res.end();
      });
    },
    { tasks: { timeoutMs: TIMEOUT_MS, retryDelayMs: 1, ...options } },
  );
  await Promise.all(plans.map((_plan, i) => request(app).get(`/plan/${i}`).expect(200)));
  await bg.idle();
  // Rejections of tasks added after the response are tallied for up to a second: drain() writes them.
  await bg.drain();
  return { stats: bg.stats(), log, added };
}

const plansArbitrary = fc.array(
  fc.array(fc.constantFrom(...BEHAVIOURS), { minLength: 1, maxLength: 5 }),
  {
    minLength: 1,
    maxLength: 8,
  },
);

test('with room for every task: each ends as its behaviour says, with one final log line per failure', async () => {
  await fc.assert(
    fc.asyncProperty(
      plansArbitrary,
      fc.integer({ min: 0, max: 2 }),
      fc.integer({ min: 1, max: 4 }),
      async (plans, retries, concurrency) => {
        const { stats, log, added } = await runPlans(plans, {
          retries,
          concurrency,
          maxPending: 10_000,
        });
        const expected = expectedOutcome(plans, retries);
        expect(stats).toMatchObject({
          ...expected,
          pending: 0,
          running: 0,
          rejected: 0,
          abandoned: 0,
        });
        expect(total(stats)).toBe(added);
        const finalLines = log.find(LOG_MESSAGES.taskFailed);
        expect(finalLines).toHaveLength(expected.failed + expected.timedOut);
        expect(finalLines.filter((line) => line.timedOut)).toHaveLength(expected.timedOut);
        for (const line of finalLines) expect(line.attempt).toBe(retries + 1);
      },
    ),
    { numRuns: 40 },
  );
});

test('with a small maxPending: every task is still accounted for, rejected ones logged', async () => {
  await fc.assert(
    fc.asyncProperty(
      plansArbitrary,
      fc.integer({ min: 0, max: 1 }),
      fc.integer({ min: 1, max: 6 }),
      async (plans, retries, maxPending) => {
        const { stats, log, added } = await runPlans(plans, {
          retries,
          concurrency: 2,
          maxPending,
        });
        expect(stats).toMatchObject({ pending: 0, running: 0, abandoned: 0 });
        expect(total(stats)).toBe(added);
        // Each request's rejections are counted in its one tally line.
        const tallied = log.find(LOG_MESSAGES.tasksRejected).map((line) => line.count as number);
        expect(tallied.reduce((a, b) => a + b, 0)).toBe(stats.rejected);
        expect(log.find(LOG_MESSAGES.taskFailed)).toHaveLength(stats.failed + stats.timedOut);
      },
    ),
    { numRuns: 40 },
  );
});
