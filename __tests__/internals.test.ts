/**
 * The bookkeeping that the public tests can only see indirectly: the runner's list of live
 * queues (what drain() walks, oldest first) and a queue letting go of its request and response.
 */
import express from 'express';
import request from 'supertest';
import type { BackgroundTasks } from '../lib';
import { LiveQueues } from '../lib/live-queues';
import { gate, makeApp } from './support/apps';

describe('LiveQueues', () => {
  const queues = (count: number) =>
    Array.from({ length: count }, () => ({ isLive: false }) as unknown as BackgroundTasks);

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

describe('a queue lets go of its request and response', () => {
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
    const internals = queue as unknown as { req: unknown; res: unknown };
    expect(internals.req).toBeUndefined();
    expect(internals.res).toBeUndefined();
    finish.open();
    await bg.idle();
    expect(seen).toEqual([
      { id: 'held', method: 'GET', url: '/kept?x=1', statusCode: 202, aborted: false },
    ]);
  });
});
