/**
 * The demo app, driven with supertest: the FastAPI example's two paths (a notification on
 * success, an ops notification on a 500) and a failing task that reaches the log.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { LOG_MESSAGES } from '../lib';
import { createDemoApp } from '../demo-app/app';
import { captureLogger } from './support/capture';

const dir = mkdtempSync(path.join(tmpdir(), 'ebt-demo-'));
const logFile = path.join(dir, 'notifications.log');
const previous = process.env.NOTIFICATION_LOG;
beforeAll(() => (process.env.NOTIFICATION_LOG = logFile));
afterAll(() => {
  process.env.NOTIFICATION_LOG = previous;
  rmSync(dir, { recursive: true, force: true });
});

function demo() {
  const log = captureLogger();
  return { ...createDemoApp({ logger: log.logger }), log };
}

const notifications = () => readFileSync(logFile, 'utf8').trim().split('\n');

test('a successful request queues a notification that is written after the response', async () => {
  const { app, bg } = demo();
  await request(app)
    .post('/send-notification/ann@example.com?message=welcome')
    .expect(200, { message: 'Request has been successfully submitted.' });
  await bg.idle();
  expect(notifications()).toContain('notification for ann@example.com: welcome');
});

test('a message with "hello" gets a plain 500, and the error handler notifies ops', async () => {
  const { app, bg, log } = demo();
  const res = await request(app)
    .post('/send-notification/bob@example.com?message=hello')
    .expect(500);
  expect(res.text).toBe('Internal Server Error');
  expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
  await bg.idle();
  expect(notifications()).toContain(
    'notification for ops@example.com: POST /send-notification/bob@example.com?message=hello failed: 500 Something went wrong',
  );
  expect(log.find(LOG_MESSAGES.requestFailed)).toEqual([
    expect.objectContaining({ status: 500, level: 'error' }),
  ]);
});

test('a failing task lands in the winston log, and the server keeps serving', async () => {
  const { app, bg, log } = demo();
  await request(app).post('/failing-task').expect(202);
  await bg.idle();
  expect(log.find(LOG_MESSAGES.taskFailed)).toEqual([
    expect.objectContaining({
      task: 'chargeCard',
      error: expect.objectContaining({ message: 'payment provider unreachable' }),
    }),
  ]);
  await request(app).post('/send-notification/cyd@example.com').expect(200);
  await bg.idle();
  expect(notifications()).toContain('notification for cyd@example.com: Success');
});

test('unknown routes get a plain-text 404', async () => {
  const { app } = demo();
  await request(app).get('/nope').expect(404, 'Cannot GET /nope');
});
