/**
 * The typed contract, checked by the compiler (ts-jest type-checks this file: an unused
 * `@ts-expect-error` fails it), and run once through real HTTP so the calls are live.
 */
import express from 'express';
import request from 'supertest';
import { defineTask, type BackgroundTasks, type TaskContext } from '../lib';
import { makeApp } from './support/apps';

const greet = defineTask('greet', (payload: { email: string; times: number }, ctx: TaskContext) => {
  calls.push(`${payload.email} x${payload.times} #${ctx.attempt}`);
});
const calls: string[] = [];

function queueTypedTasks(tasks: BackgroundTasks): void {
  const send = (email: string, count: number) => void calls.push(`${email} ${count}`);
  tasks.add(send, 'ann@example.com', 2).add(async () => undefined);
  // @ts-expect-error: the second argument must be a number
  tasks.add(send, 'ann@example.com', 'two');
  // @ts-expect-error: an argument is missing
  tasks.add(send, 'ann@example.com');
  // @ts-expect-error: one argument too many
  tasks.add(send, 'ann@example.com', 2, true);
  tasks.add({
    name: 'ctx',
    timeoutMs: 1_000,
    retries: 1,
    run: (ctx) => void calls.push(`ctx ${ctx.request.method}`),
  });
  tasks.add(greet, { email: 'bob@example.com', times: 3 });
  // @ts-expect-error: the payload must match the definition
  tasks.add(greet, { email: 'bob@example.com' });
  // @ts-expect-error: no extra fields either (the payload type comes from the definition alone)
  tasks.add(greet, { email: 'cyd@example.com', times: 1, admin: true });
  // @ts-expect-error: the object form takes no arguments
  tasks.add({ run: () => undefined }, 1);
}

test('the typed calls run as written (the rejected ones throw or run as plain JavaScript would)', async () => {
  const { app, bg } = makeApp(express, (app) => {
    app.get('/', (_req, res) => {
      try {
        queueTypedTasks(res.locals.backgroundTasks);
      } catch (error) {
        calls.push(`threw: ${(error as Error).message}`);
      }
      res.end();
    });
  });
  await request(app).get('/').expect(200);
  await bg.idle();
  expect(calls).toEqual([
    'threw: add(): an object-form task takes no arguments; pass them through run()',
    'ann@example.com 2',
    'ann@example.com two',
    'ann@example.com undefined',
    'ann@example.com 2',
    'ctx GET',
    'bob@example.com x3 #1',
    'bob@example.com xundefined #1',
    'cyd@example.com x1 #1',
  ]);
});
