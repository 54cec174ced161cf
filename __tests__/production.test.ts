/**
 * The production options of backgroundTasks(): timeouts, retries, the concurrency limit, the
 * pending limit, the counters and drain(), each with its default, through real HTTP.
 */
import express from 'express';
import request from 'supertest';
import {
  BACKGROUND_TASKS_DEFAULTS,
  LOG_MESSAGES,
  TaskAbandonedError,
  TaskTimeoutError,
  backgroundTasks,
  defineTask,
} from '../lib';
import type { BackgroundTasks, BackgroundTasksStats } from '../lib';
import { captureLogger } from './support/capture';
import { gate, makeApp, type TestAppOptions } from './support/apps';
import { pollUntil } from './support/redis';
import { TALLY_MS } from '../lib/rejection-tallies';

/** An app whose GET / hands the request's queue to `queue`, then answers 200. */
function appWith(queue: (tasks: BackgroundTasks) => void, options: TestAppOptions['tasks'] = {}) {
  return makeApp(
    express,
    (app) => {
      app.get('/', (_req, res) => {
        queue(res.locals.backgroundTasks);
        res.end();
      });
    },
    { tasks: options },
  );
}

const never = () => new Promise<never>(() => undefined);
const total = (stats: BackgroundTasksStats) =>
  stats.pending +
  stats.running +
  stats.succeeded +
  stats.failed +
  stats.timedOut +
  stats.rejected +
  stats.abandoned +
  stats.enqueued;

test('the defaults', () => {
  expect(BACKGROUND_TASKS_DEFAULTS).toEqual({
    runOnAbort: true,
    timeoutMs: 30_000,
    retries: 0,
    retryDelayMs: 100,
    concurrency: 16,
    maxPending: 10_000,
    maxPayloadBytes: 1_048_576,
  });
});

describe('timeouts', () => {
  test('a task past timeoutMs has its signal aborted, is logged as timed out, and the queue moves on', async () => {
    const reasons: unknown[] = [];
    const events: string[] = [];
    const { app, bg, log } = appWith(
      (tasks) =>
        tasks
          .add({
            name: 'hangs',
            run: ({ signal }) => {
              signal.addEventListener('abort', () => reasons.push(signal.reason));
              return never();
            },
          })
          .add(() => events.push('next ran')),
      { timeoutMs: 20 },
    );
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(events).toEqual(['next ran']);
    expect(reasons).toEqual([expect.any(TaskTimeoutError)]);
    expect(log.find(LOG_MESSAGES.taskFailed)).toEqual([
      expect.objectContaining({
        level: 'error',
        task: 'hangs',
        timedOut: true,
        error: expect.objectContaining({
          name: 'TaskTimeoutError',
          message: 'task timed out after 20 ms',
        }),
      }),
    ]);
    expect(bg.stats()).toMatchObject({
      timedOut: 1,
      succeeded: 1,
      failed: 0,
      running: 0,
      pending: 0,
    });
  });

  test("a per-task timeoutMs overrides the middleware's, longer or shorter, and 0 means no limit", async () => {
    const slow = gate();
    const tightTimedOut = gate();
    const { app, bg, log } = makeApp(
      express,
      (app) => {
        app.get('/unbounded', (_req, res) => {
          res.locals.backgroundTasks.add({
            name: 'unbounded',
            timeoutMs: 0,
            run: () => slow.promise,
          });
          res.end();
        });
        app.get('/roomy', (_req, res) => {
          res.locals.backgroundTasks.add({
            name: 'roomy',
            timeoutMs: 60_000,
            run: () => slow.promise,
          });
          res.end();
        });
        app.get('/tight', (_req, res) => {
          res.locals.backgroundTasks.add({ name: 'tight', timeoutMs: 5, run: never });
          res.end();
        });
      },
      {
        tasks: {
          timeoutMs: 5,
          onTaskError: (failure) => failure.task === 'tight' && tightTimedOut.open(),
        },
      },
    );
    await request(app).get('/unbounded').expect(200);
    await request(app).get('/roomy').expect(200);
    await request(app).get('/tight').expect(200);
    // 'tight' started after the others and has timed out: the middleware's 5 ms on either would have fired too.
    await tightTimedOut.promise;
    expect(bg.stats()).toMatchObject({ running: 2, timedOut: 1 });
    slow.open();
    await bg.idle();
    expect(log.find(LOG_MESSAGES.taskFailed).map((record) => record.task)).toEqual(['tight']);
    expect(bg.stats()).toMatchObject({ succeeded: 2, timedOut: 1 });
  });

  test('a timed-out task that rejects later is not reported again', async () => {
    const late = gate();
    const { app, bg, log } = appWith(
      (tasks) =>
        tasks.add({
          name: 'late',
          run: async () => {
            await late.promise;
            throw new Error('too late');
          },
        }),
      { timeoutMs: 10 },
    );
    await request(app).get('/').expect(200);
    await bg.idle();
    late.open();
    await new Promise((resolve) => setImmediate(resolve));
    expect(log.find(LOG_MESSAGES.taskFailed)).toHaveLength(1);
    expect(bg.stats()).toMatchObject({ timedOut: 1, failed: 0 });
  });
});

describe('retries', () => {
  test('a task that fails twice then succeeds: two warn lines, no error, attempts counted from 1', async () => {
    const attempts: number[] = [];
    const { app, bg, log } = appWith(
      (tasks) =>
        tasks.add({
          name: 'flaky',
          run: ({ attempt }) => {
            attempts.push(attempt);
            if (attempt < 3) throw new Error(`attempt ${attempt} failed`);
          },
        }),
      { retries: 3, retryDelayMs: 1 },
    );
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(attempts).toEqual([1, 2, 3]);
    expect(log.find(LOG_MESSAGES.taskRetrying)).toEqual([
      expect.objectContaining({
        level: 'warn',
        task: 'flaky',
        attempt: 1,
        retryInMs: expect.any(Number),
      }),
      expect.objectContaining({
        level: 'warn',
        task: 'flaky',
        attempt: 2,
        retryInMs: expect.any(Number),
      }),
    ]);
    expect(log.find(LOG_MESSAGES.taskFailed)).toEqual([]);
    expect(bg.stats()).toMatchObject({ succeeded: 1, failed: 0, pending: 0 });
  });

  test('a task that always fails: a warn line per retried attempt and one error line, on the last', async () => {
    const { app, bg, log } = appWith((tasks) =>
      tasks.add({
        name: 'doomed',
        retries: 2,
        retryDelayMs: 1,
        run: () => Promise.reject(new Error('still down')),
      }),
    );
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(log.find(LOG_MESSAGES.taskRetrying).map((record) => record.attempt)).toEqual([1, 2]);
    expect(log.find(LOG_MESSAGES.taskFailed)).toEqual([
      expect.objectContaining({ level: 'error', attempt: 3 }),
    ]);
    expect(bg.stats()).toMatchObject({ failed: 1, succeeded: 0 });
  });

  test('the backoff doubles per attempt, with jitter between half and all of it', async () => {
    const { app, bg, log } = appWith(
      (tasks) =>
        tasks.add({
          name: 'backoff',
          run: () => {
            throw new Error('no');
          },
        }),
      { retries: 4, retryDelayMs: 8 },
    );
    await request(app).get('/').expect(200);
    await bg.idle();
    const delays = log.find(LOG_MESSAGES.taskRetrying).map((record) => record.retryInMs as number);
    expect(delays).toHaveLength(4);
    delays.forEach((delay, i) => {
      const ceiling = 8 * 2 ** i;
      expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
      expect(delay).toBeLessThanOrEqual(ceiling);
    });
  });

  test('a timed-out attempt is retried; the task counts as timed out only if the last attempt timed out', async () => {
    const { app, bg, log } = appWith((tasks) =>
      tasks
        .add({
          name: 'slow once',
          timeoutMs: 10,
          retries: 1,
          retryDelayMs: 1,
          run: ({ attempt }) => (attempt === 1 ? never() : undefined),
        })
        .add({ name: 'always slow', timeoutMs: 10, retries: 1, retryDelayMs: 1, run: never }),
    );
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(
      log.find(LOG_MESSAGES.taskRetrying).map((record) => [record.task, record.timedOut]),
    ).toEqual([
      ['slow once', true],
      ['always slow', true],
    ]);
    expect(
      log
        .find(LOG_MESSAGES.taskFailed)
        .map((record) => [record.task, record.attempt, record.timedOut]),
    ).toEqual([['always slow', 2, true]]);
    expect(bg.stats()).toMatchObject({ succeeded: 1, timedOut: 1 });
  });

  test('by default a task is not retried', async () => {
    const { app, bg, log } = appWith((tasks) => tasks.add(() => Promise.reject(new Error('once'))));
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(log.find(LOG_MESSAGES.taskRetrying)).toEqual([]);
    expect(log.find(LOG_MESSAGES.taskFailed)).toEqual([expect.objectContaining({ attempt: 1 })]);
  });

  test("a task waiting to retry gives its slot to another request's task", async () => {
    const otherRan = gate();
    const { app, bg } = makeApp(
      express,
      (app) => {
        app.get('/failing', (_req, res) => {
          res.locals.backgroundTasks.add({
            name: 'retries in a minute',
            retries: 1,
            retryDelayMs: 60_000,
            run: () => Promise.reject(new Error('down')),
          });
          res.end();
        });
        app.get('/other', (_req, res) => {
          res.locals.backgroundTasks.add(() => otherRan.open());
          res.end();
        });
      },
      { tasks: { concurrency: 1 } },
    );
    await request(app).get('/failing').expect(200);
    await request(app).get('/other').expect(200);
    await otherRan.promise; // would wait a minute if the retry kept the only slot
    expect(bg.stats()).toMatchObject({ succeeded: 1, pending: 1, running: 0 });
    await expect(bg.drain({ timeoutMs: 1 })).resolves.toEqual({ completed: false, abandoned: 1 });
  });

  test('while a task waits to retry, the next task of its request waits too', async () => {
    const events: string[] = [];
    const { app, bg } = appWith(
      (tasks) =>
        tasks
          .add({
            name: 'first',
            run: ({ attempt }) => {
              events.push(`first #${attempt}`);
              if (attempt === 1) throw new Error('again');
            },
          })
          .add(() => events.push('second')),
      { retries: 1, retryDelayMs: 5 },
    );
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(events).toEqual(['first #1', 'first #2', 'second']);
  });
});

describe('concurrency', () => {
  /** Sends `count` requests one after another, each queuing one held task; returns what each task saw. */
  async function heldTasks(count: number, options: TestAppOptions['tasks']) {
    const release = gate();
    const started: number[] = [];
    let running = 0;
    let peak = 0;
    const testApp = makeApp(
      express,
      (app) => {
        app.get('/:n', (req, res) => {
          res.locals.backgroundTasks.add(async (n: number) => {
            started.push(n);
            peak = Math.max(peak, ++running);
            await release.promise;
            running--;
          }, Number(req.params.n));
          res.end();
        });
      },
      { tasks: options },
    );
    for (let n = 0; n < count; n++) await request(testApp.app).get(`/${n}`).expect(200);
    return { ...testApp, started, release, peak: () => peak };
  }

  test('at most `concurrency` tasks run at once; the rest wait and start in FIFO order', async () => {
    const { bg, started, release, peak } = await heldTasks(6, { concurrency: 2 });
    expect(bg.stats()).toMatchObject({ running: 2, pending: 4 });
    expect(started).toEqual([0, 1]);
    release.open();
    await bg.idle();
    expect(started).toEqual([0, 1, 2, 3, 4, 5]);
    expect(peak()).toBe(2);
    expect(bg.stats()).toMatchObject({ running: 0, pending: 0, succeeded: 6 });
  });

  test("a request's next task joins the back of the line, so one busy request cannot starve another", async () => {
    const order: string[] = [];
    const first = gate();
    const { app, bg } = makeApp(
      express,
      (app) => {
        app.get('/a', (_req, res) => {
          res.locals.backgroundTasks
            .add(async () => {
              order.push('A1');
              await first.promise;
            })
            .add(() => order.push('A2'))
            .add(() => order.push('A3'));
          res.end();
        });
        app.get('/b', (_req, res) => {
          res.locals.backgroundTasks.add(() => order.push('B1'));
          res.end();
        });
      },
      { tasks: { concurrency: 1 } },
    );
    await request(app).get('/a').expect(200);
    await request(app).get('/b').expect(200);
    first.open();
    await bg.idle();
    expect(order).toEqual(['A1', 'B1', 'A2', 'A3']);
  });

  test('the default limit is 16', async () => {
    const { bg, release, peak } = await heldTasks(20, {});
    expect(bg.stats()).toMatchObject({ running: 16, pending: 4 });
    release.open();
    await bg.idle();
    expect(peak()).toBe(16);
  });

  test('within one request tasks stay one after another, even with free slots', async () => {
    let running = 0;
    let peak = 0;
    const step = async () => {
      peak = Math.max(peak, ++running);
      await new Promise((resolve) => setImmediate(resolve));
      running--;
    };
    const { app, bg } = appWith((tasks) => tasks.add(step).add(step).add(step), { concurrency: 8 });
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(peak).toBe(1);
    expect(bg.stats().succeeded).toBe(3);
  });

  test('concurrency: Infinity lifts the limit', async () => {
    const { bg, release, peak } = await heldTasks(30, { concurrency: Infinity });
    expect(bg.stats()).toMatchObject({ running: 30, pending: 0 });
    release.open();
    await bg.idle();
    expect(peak()).toBe(30);
  });
});

describe('maxPending', () => {
  test("a task beyond it is rejected, counted, and logged in its request's tally line with its name and request id; add does not throw", async () => {
    const ran: number[] = [];
    const { app, bg, log } = appWith(
      (tasks) => {
        for (let i = 0; i < 3; i++) tasks.add({ name: `task-${i}`, run: () => void ran.push(i) });
      },
      { maxPending: 2 },
    );
    await request(app).get('/').set('X-Request-Id', 'full-1').expect(200);
    await bg.idle();
    expect(ran).toEqual([0, 1]);
    expect(log.find(LOG_MESSAGES.tasksRejected)).toEqual([
      expect.objectContaining({
        level: 'error',
        count: 1,
        tasks: { 'task-2': 1 },
        requestId: 'full-1',
        method: 'GET',
        url: '/',
        statusCode: 200,
        reason: 'queue full',
        maxPending: 2,
      }),
    ]);
    expect(log.find(LOG_MESSAGES.taskRejected)).toEqual([]);
    expect(bg.stats()).toMatchObject({ succeeded: 2, rejected: 1 });
  });

  test('the default is 10000 pending tasks', async () => {
    let ran = 0;
    const { app, bg, log } = appWith((tasks) => {
      for (let i = 0; i < 10_001; i++) tasks.add(() => void ran++);
    });
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(ran).toBe(10_000);
    expect(log.find(LOG_MESSAGES.tasksRejected)).toEqual([
      expect.objectContaining({ count: 1, tasks: { anonymous: 1 } }),
    ]);
    expect(bg.stats()).toMatchObject({ succeeded: 10_000, rejected: 1 });
  });

  test('an overflow of 100,000 tasks of 150 names is one line: counted by name, the names past 100 together', async () => {
    const { app, bg, log } = appWith(
      (tasks) => {
        for (let i = 0; i < 100_000; i++)
          tasks.add({ name: `name-${i % 150}`, run: () => undefined });
      },
      { maxPending: 10 },
    );
    await request(app).get('/').expect(200);
    await bg.idle();
    const [line, ...more] = log.find(LOG_MESSAGES.tasksRejected);
    expect(more).toEqual([]);
    expect(line.count).toBe(99_990);
    const counts = line.tasks as Record<string, number>;
    expect(Object.keys(counts)).toHaveLength(101);
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(99_990);
    // Rejected from the eleventh task on: the first hundred names rejected are name-10 to name-109,
    // counted one by one; name-110 to name-149 and name-0 to name-9 (666 rejections each) together.
    expect(counts['name-10']).toBe(667);
    expect(counts['name-109']).toBe(666);
    expect(counts['name-0']).toBeUndefined();
    expect(counts['(other names)']).toBe(50 * 666);
    expect(bg.stats()).toMatchObject({ succeeded: 10, rejected: 99_990 });
  });

  test('rejections after the response ended, with nothing to end the tally: a line when its second is up, and the next rejection opens a new tally', async () => {
    let tasks!: import('../lib').BackgroundTasks;
    const holder = gate();
    const { app, bg, log } = appWith(
      (queue) => {
        tasks = queue;
        queue.add({ name: 'holder', run: () => holder.promise });
      },
      { maxPending: 1 },
    );
    await request(app).get('/').expect(200);
    const lines = () => log.find(LOG_MESSAGES.tasksRejected);
    // The holder runs, so the first late task is pending alone: the next ones are refused.
    tasks.add({ name: 'late', run: () => undefined });
    const opened = performance.now();
    for (let i = 0; i < 3; i++) tasks.add({ name: 'late', run: () => undefined });
    await pollUntil(() => lines().length === 1, 'the first tally line');
    expect(performance.now() - opened).toBeGreaterThanOrEqual(TALLY_MS - 1);
    expect(lines()).toEqual([expect.objectContaining({ count: 3, tasks: { late: 3 } })]);
    for (let i = 0; i < 2; i++) tasks.add({ name: 'later', run: () => undefined });
    await pollUntil(() => lines().length === 2, 'the second tally line');
    expect(lines()[1]).toMatchObject({ count: 2, tasks: { later: 2 } });
    holder.open();
    await bg.idle();
    expect(bg.stats()).toMatchObject({ succeeded: 2, rejected: 5 });
  });

  test('rejections after the response ended are tallied for up to a second, and drain() writes what is open', async () => {
    let tasks!: import('../lib').BackgroundTasks;
    const { app, bg, log } = appWith(
      (queue) => {
        tasks = queue;
        queue.add({ name: 'holder', run: () => new Promise((resolve) => setTimeout(resolve, 50)) });
      },
      { maxPending: 1 },
    );
    await request(app).get('/').expect(200);
    for (let i = 0; i < 5; i++) tasks.add({ name: 'late', run: () => undefined });
    expect(log.find(LOG_MESSAGES.tasksRejected)).toEqual([]);
    await bg.drain();
    // The holder runs by then, so the first late task is pending alone: the other four are refused.
    expect(log.find(LOG_MESSAGES.tasksRejected)).toEqual([
      expect.objectContaining({ count: 4, tasks: { late: 4 } }),
    ]);
    expect(bg.stats()).toMatchObject({ succeeded: 2, rejected: 4 });
  });
});

describe('stats()', () => {
  test('every task added is in exactly one counter, at every step', async () => {
    const release = gate();
    const held = gate();
    const { app, bg } = appWith(
      (tasks) =>
        tasks
          .add(() => undefined)
          .add(() => {
            throw new Error('x');
          })
          .add({
            name: 'held',
            run: () => {
              held.open();
              return release.promise;
            },
          })
          .add({ name: 'after', run: () => undefined }),
      { maxPending: 3 },
    );
    await request(app).get('/').expect(200);
    // A turn of the event loop comes between two tasks: the third starts a few turns later.
    await held.promise;
    expect(bg.stats()).toEqual({
      pending: 0,
      running: 1,
      succeeded: 1,
      failed: 1,
      timedOut: 0,
      rejected: 1,
      abandoned: 0,
      enqueued: 0,
      leftToWorkers: 0,
      logRecordsDropped: 0,
    });
    release.open();
    await bg.idle();
    expect(bg.stats()).toMatchObject({ running: 0, succeeded: 2 });
    expect(total(bg.stats())).toBe(4);
  });
});

describe('drain()', () => {
  test('resolves completed once every task has ended, including tasks added while draining', async () => {
    const events: string[] = [];
    const releases = [gate(), gate()];
    const firstDone = gate();
    let requests = 0;
    const { app, bg } = appWith((tasks) => {
      const n = requests++;
      tasks.add(async () => {
        await releases[n].promise;
        events.push(`done ${n}`);
        if (n === 0) firstDone.open();
      });
    });
    await request(app).get('/').expect(200);
    const draining = bg.drain({ timeoutMs: 10_000 });
    let settled = false;
    void draining.then(() => (settled = true));
    await request(app).get('/').expect(200); // a request still in flight during shutdown
    releases[0].open();
    await firstDone.promise;
    await new Promise((resolve) => setImmediate(resolve)); // every pending turn of drain() has run
    expect(settled).toBe(false); // the late task still runs: drain() waits for it too
    releases[1].open();
    await expect(draining).resolves.toEqual({ completed: true, abandoned: 0 });
    expect(events).toEqual(['done 0', 'done 1']);
  });

  test('resolves at once when nothing is queued, with the default timeout', async () => {
    const bg = backgroundTasks({ logger: captureLogger().logger });
    await expect(bg.drain()).resolves.toEqual({ completed: true, abandoned: 0 });
  });

  test('at the timeout, aborts what runs and logs every abandoned task by name and request id', async () => {
    const reasons: unknown[] = [];
    const { app, bg, log } = appWith(
      (tasks) =>
        tasks
          .add({
            name: 'stuck',
            run: ({ signal }) => {
              signal.addEventListener('abort', () => reasons.push(signal.reason));
              return never();
            },
          })
          .add({ name: 'never started', run: () => undefined }),
      { timeoutMs: 0 },
    );
    await request(app).get('/').set('X-Request-Id', 'drain-1').expect(200);
    await expect(bg.drain({ timeoutMs: 20 })).resolves.toEqual({ completed: false, abandoned: 2 });
    expect(reasons).toEqual([expect.any(TaskAbandonedError)]);
    expect(log.find(LOG_MESSAGES.taskAbandoned)).toEqual([
      expect.objectContaining({
        level: 'error',
        task: 'stuck',
        requestId: 'drain-1',
        state: 'running',
      }),
      expect.objectContaining({
        level: 'error',
        task: 'never started',
        requestId: 'drain-1',
        state: 'pending',
      }),
    ]);
    expect(bg.stats()).toMatchObject({ pending: 0, running: 0, abandoned: 2 });
    await bg.idle();
  });

  test('the middleware keeps working after an incomplete drain', async () => {
    const events: string[] = [];
    const { app, bg } = makeApp(express, (app) => {
      app.get('/stuck', (_req, res) => {
        res.locals.backgroundTasks.add({ name: 'stuck', timeoutMs: 0, run: never });
        res.end();
      });
      app.get('/quick', (_req, res) => {
        res.locals.backgroundTasks.add(() => events.push('quick'));
        res.end();
      });
    });
    await request(app).get('/stuck').expect(200);
    await expect(bg.drain({ timeoutMs: 10 })).resolves.toEqual({ completed: false, abandoned: 1 });
    await request(app).get('/quick').expect(200);
    await bg.idle();
    expect(events).toEqual(['quick']);
    expect(bg.stats()).toMatchObject({ abandoned: 1, succeeded: 1, running: 0 });
  });

  test('abandons tasks waiting for a retry, and those of responses that have not ended', async () => {
    const { app, bg, log } = makeApp(
      express,
      (app) => {
        app.get('/retrying', (_req, res) => {
          res.locals.backgroundTasks.add({
            name: 'retrying',
            retries: 5,
            retryDelayMs: 60_000,
            run: () => Promise.reject(new Error('x')),
          });
          res.end();
        });
        app.get('/open', (_req, res) => {
          res.locals.backgroundTasks.add({ name: 'response still open', run: () => undefined });
          opened.open();
        });
      },
      { tasks: { timeoutMs: 0 } },
    );
    const opened = gate();
    await request(app).get('/retrying').expect(200);
    const inFlight = request(app)
      .get('/open')
      .timeout(2_000)
      .catch(() => undefined);
    await opened.promise;
    await expect(bg.drain({ timeoutMs: 20 })).resolves.toEqual({ completed: false, abandoned: 2 });
    expect(
      log.find(LOG_MESSAGES.taskAbandoned).map((record) => [record.task, record.state]),
    ).toEqual([
      ['retrying', 'waiting to retry'],
      ['response still open', 'pending'],
    ]);
    expect(bg.stats()).toMatchObject({ pending: 0, running: 0, abandoned: 2 });
    await inFlight;
  });
});

test('defineTask keeps a frozen copy of its options: changing the object afterwards changes nothing', async () => {
  const options = { retries: 0, retryDelayMs: 1 };
  const attempts: number[] = [];
  const once = defineTask(
    'once',
    (_payload: undefined, ctx) => {
      attempts.push(ctx.attempt);
      throw new Error('fails');
    },
    options,
  );
  options.retries = 3;
  const { app, bg } = appWith((tasks) => tasks.add(once, undefined));
  await request(app).get('/').expect(200);
  await bg.idle();
  expect(attempts).toEqual([1]);
  expect(once.options).toEqual({ retries: 0, retryDelayMs: 1 });
  expect(Object.isFrozen(once.options)).toBe(true);
});

describe('a durable queue that does not answer', () => {
  test('drain() abandons the hand-off and logs it; a late failure does not run it here', async () => {
    let fail!: (error: Error) => void;
    const durable = { enqueue: () => new Promise((_resolve, reject) => (fail = reject)) };
    const notify = defineTask('notify', () => undefined);
    const { app, bg, log } = appWith((tasks) => tasks.add(notify, undefined), { durable });
    await request(app).get('/').set('X-Request-Id', 'handoff-1').expect(200);
    await expect(bg.drain({ timeoutMs: 10 })).resolves.toEqual({ completed: false, abandoned: 1 });
    expect(log.find(LOG_MESSAGES.taskAbandoned)).toEqual([
      expect.objectContaining({ task: 'notify', requestId: 'handoff-1', state: 'enqueueing' }),
    ]);
    fail(new Error('redis is gone'));
    await bg.idle();
    await new Promise((resolve) => setImmediate(resolve));
    // Its own message: "running the task in-process" would not be true of it.
    expect(log.find(LOG_MESSAGES.enqueueFailedAbandoned)).toEqual([
      expect.objectContaining({
        task: 'notify',
        error: expect.objectContaining({ message: 'redis is gone' }),
      }),
    ]);
    expect(log.find(LOG_MESSAGES.enqueueFailed)).toEqual([]);
    expect(bg.stats()).toMatchObject({
      pending: 0,
      running: 0,
      succeeded: 0,
      abandoned: 1,
      enqueued: 0,
      leftToWorkers: 0,
    });
  });
});

describe('option checks: a bad option fails when the middleware is created', () => {
  const bad: Array<[string, object, RegExp]> = [
    ['an unknown option', { timeout: 5 }, /unknown option "timeout"/],
    [
      'a negative timeoutMs',
      { timeoutMs: -1 },
      /"timeoutMs" must be an integer from 0 to 2147483647, got -1/,
    ],
    [
      'a timeoutMs setTimeout cannot honour',
      { timeoutMs: 2 ** 31 },
      /"timeoutMs" must be an integer/,
    ],
    ['a fractional retries', { retries: 1.5 }, /"retries" must be an integer from 0 to 100/],
    ['a string retryDelayMs', { retryDelayMs: '100' }, /"retryDelayMs" must be an integer/],
    ['concurrency 0', { concurrency: 0 }, /"concurrency" must be an integer from 1/],
    ['a NaN maxPending', { maxPending: NaN }, /"maxPending" must be an integer from 0/],
    [
      'a non-boolean runOnAbort',
      { runOnAbort: 'yes' },
      /"runOnAbort" must be a boolean, got "yes"/,
    ],
    ['a logger without methods', { logger: {} }, /"logger" must be a winston Logger/],
    ['a non-function onTaskError', { onTaskError: 42 }, /"onTaskError" must be a function, got 42/],
    ['a durable queue without enqueue', { durable: {} }, /"durable" must be a durable queue/],
  ];
  test.each(bad)('%s', (_name, options, message) => {
    expect(() => backgroundTasks(options as never)).toThrow(TypeError);
    expect(() => backgroundTasks(options as never)).toThrow(message);
  });

  test('options that are not an object', () => {
    expect(() => backgroundTasks('fast' as never)).toThrow(/options must be an object, got "fast"/);
  });

  test('a bad task fails at add(), not later, and is not queued', async () => {
    const attempts: Array<[string, () => unknown]> = [];
    const { app, bg } = appWith((tasks) => {
      const add = tasks.add.bind(tasks) as (...args: unknown[]) => unknown;
      attempts.push(
        ['number', () => add(42)],
        ['empty name', () => add({ name: '', run: () => undefined })],
        ['bad retries', () => add({ run: () => undefined, retries: -1 })],
        ['extra argument', () => add({ run: () => undefined }, 'extra')],
        ['size after', () => tasks.size],
      );
    });
    await request(app).get('/').expect(200);
    const outcome = (run: () => unknown) => {
      try {
        return run();
      } catch (error) {
        return error instanceof TypeError ? error.message : error;
      }
    };
    expect(Object.fromEntries(attempts.map(([name, run]) => [name, outcome(run)]))).toEqual({
      number: expect.stringMatching(
        /expected a function, a \{ name, run \} object or a defined task, got 42/,
      ),
      'empty name': expect.stringMatching(/task name must be a non-empty string/),
      'bad retries': expect.stringMatching(/"retries" must be an integer/),
      'extra argument': expect.stringMatching(/object-form task takes no arguments/),
      'size after': 0,
    });
    await bg.idle();
    expect(bg.stats()).toMatchObject({ pending: 0, succeeded: 0, rejected: 0 });
  });

  test('drain() checks its options too', async () => {
    const bg = backgroundTasks({ logger: captureLogger().logger });
    await expect(bg.drain({ timeoutMs: -5 })).rejects.toThrow(/"timeoutMs" must be an integer/);
  });
});
