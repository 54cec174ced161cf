/**
 * The bookkeeping that the public tests can only see indirectly: the runner's list of live
 * queues (what drain() walks, oldest first), the shared timers of running attempts, and a queue
 * letting go of its request and response.
 */
import express from 'express';
import request from 'supertest';
import { performance } from 'node:perf_hooks';
import { BackgroundTasks } from '../lib';
import { LiveQueues } from '../lib/live-queues';
import type { RequestQueue } from '../lib/request-queue';
import { Timeouts, type Timed } from '../lib/timeouts';
import { gate, makeApp } from './support/apps';

describe('LiveQueues', () => {
  const queues = (count: number) =>
    Array.from({ length: count }, () => ({ isLive: false }) as unknown as RequestQueue);

  test('takeAll() returns the queues oldest first and empties the list', () => {
    const live = new LiveQueues();
    const [a, b, c] = queues(3);
    live.add(a);
    live.add(b);
    live.add(c);
    live.add(a); // already in: no second entry
    expect(live.takeAll()).toEqual([a, b, c]);
    expect(live.takeAll()).toEqual([]);
    expect([a, b, c].map((queue) => queue.isLive)).toEqual([false, false, false]);
  });

  test.each([
    ['the first', 0],
    ['a middle', 1],
    ['the last', 2],
    ['an absent', 3],
  ])('delete() of %s queue keeps the others in order', (_name, index) => {
    const live = new LiveQueues();
    const all = queues(4);
    for (const queue of all.slice(0, 3)) live.add(queue);
    live.delete(all[index]);
    const kept = all.slice(0, 3).filter((_queue, i) => i !== index);
    expect(live.takeAll()).toEqual(kept);
  });

  test('a queue deleted and added again goes to the end', () => {
    const live = new LiveQueues();
    const [a, b, c] = queues(3);
    live.add(a);
    live.add(b);
    live.add(c);
    live.delete(a);
    live.add(a);
    live.delete(c);
    expect(live.takeAll()).toEqual([b, a]);
  });
});

describe('Timeouts', () => {
  interface Probe extends Timed {
    name: string;
  }
  const probe = (name: string): Probe => ({
    name,
    deadline: 0,
    timeoutList: undefined,
    previousTimed: undefined,
    nextTimed: undefined,
  });

  /** Timeouts whose expiries are recorded, with the time each came, and awaitable by count. */
  function recorder(onExpire: (attempt: Probe) => void = () => undefined) {
    const expired: Array<{ name: string; late: number }> = [];
    let wanted = 0;
    let reached: () => void = () => undefined;
    const timeouts = new Timeouts<Probe>((attempt) => {
      expired.push({ name: attempt.name, late: performance.now() - attempt.deadline });
      onExpire(attempt);
      if (expired.length === wanted) reached();
    });
    const until = (count: number) =>
      new Promise<void>((resolve) => {
        wanted = count;
        reached = resolve;
        if (expired.length >= count) resolve();
      });
    const lists = () => (timeouts as unknown as { lists: Map<number, unknown> }).lists.size;
    return { timeouts, expired, until, lists };
  }

  test('attempts of one timeout expire in start order, each once, never before their deadline', async () => {
    const { timeouts, expired, until, lists } = recorder();
    const now = performance.now();
    for (const [name, offset] of [
      ['a', 0],
      ['b', 3],
      ['c', 6],
    ] as const)
      timeouts.add(probe(name), 10, now + offset);
    expect(lists()).toBe(1);
    await until(3);
    expect(expired.map((e) => e.name)).toEqual(['a', 'b', 'c']);
    for (const { late } of expired) expect(late).toBeGreaterThanOrEqual(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(expired).toHaveLength(3);
    expect(lists()).toBe(0); // an emptied list is dropped with its timer
  });

  test('an attempt deleted before its deadline never expires; those after it still do', async () => {
    const { timeouts, expired, until } = recorder();
    const now = performance.now();
    const first = probe('first');
    timeouts.add(first, 15, now);
    timeouts.add(probe('second'), 15, now + 5);
    timeouts.delete(first); // the timer stays armed for `first`, and re-arms for `second`
    timeouts.delete(first); // a second delete does nothing
    await until(1);
    expect(expired.map((e) => e.name)).toEqual(['second']);
    expect(expired[0].late).toBeGreaterThanOrEqual(0);
  });

  test('each timeout has its own list: a shorter one added later expires first', async () => {
    const { timeouts, expired, until, lists } = recorder();
    const now = performance.now();
    timeouts.add(probe('long'), 40, now);
    timeouts.add(probe('short'), 5, now);
    expect(lists()).toBe(2);
    await until(2);
    expect(expired.map((e) => e.name)).toEqual(['short', 'long']);
  });

  test('an attempt started while another expires gets its own full timeout', async () => {
    let restarted = false;
    const { timeouts, expired, until } = recorder((attempt) => {
      if (restarted) return;
      restarted = true;
      timeouts.add(probe(`${attempt.name} again`), 10, performance.now());
    });
    timeouts.add(probe('once'), 10, performance.now());
    await until(2);
    expect(expired.map((e) => e.name)).toEqual(['once', 'once again']);
    for (const { late } of expired) expect(late).toBeGreaterThanOrEqual(0);
  });
});

describe("a request's task record lets go of its request and response", () => {
  test('once the response has ended while a task is still running, keeping what ctx.request shows', async () => {
    const running = gate();
    const finish = gate();
    let queue: BackgroundTasks | undefined;
    const seen: unknown[] = [];
    const { app, bg } = makeApp(express, (app) => {
      app.get('/kept', (_req, res) => {
        queue = res.locals.backgroundTasks;
        queue.add({
          name: 'long',
          run: async (ctx) => {
            running.open();
            await finish.promise;
            seen.push(ctx.request);
          },
        });
        res.status(202).end();
      });
    });
    await request(app).get('/kept?x=1').set('X-Request-Id', 'held').expect(202);
    await running.promise;
    // The record is what the runner holds while the task runs; the queue in res.locals handed
    // req and res to it at the first add().
    const record = BackgroundTasks.recordOf(queue!)!;
    expect(record.req).toBeUndefined();
    expect(record.res).toBeUndefined();
    finish.open();
    await bg.idle();
    expect(seen).toEqual([
      { id: 'held', method: 'GET', url: '/kept?x=1', statusCode: 202, aborted: false },
    ]);
  });
});
