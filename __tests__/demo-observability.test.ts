/**
 * What `npm run demo` shows of its background work, run as a real child process: Prometheus
 * metrics after the failing task, its spans on the console with OTEL_TRACES_EXPORTER=console (the
 * request and its task in one trace), and, with REDIS_URL, the bull-board dashboard and its API
 * listing the durable queue's job.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import request from 'supertest';
import winston from 'winston';
import { defineTask } from '../lib';
import { startWorker } from '../lib/bullmq';
import { startDemo, type Demo } from './support/demo-process';
import { pollUntil, startRedis, type RedisServer } from './support/redis';

const running: Demo[] = [];
const silent = winston.createLogger({ silent: true });
afterAll(() => running.forEach((demo) => demo.cleanUp()));

async function demo(env: Record<string, string> = {}): Promise<Demo> {
  const started = await startDemo(env);
  running.push(started);
  return started;
}

test('a scrape of /metrics after the failing task shows it ended failed, and its attempt histogram', async () => {
  const { base, metricsUrl } = await demo();
  await request(base).post('/failing-task').expect(202);
  // The task runs after the response: poll the endpoint until its point is there.
  const body = await pollUntil(async () => {
    const text = await (await fetch(metricsUrl)).text();
    return text.includes('background_task_ended_total{') ? text : undefined;
  }, 'the failed task in the scrape');
  const labels = 'background_task_name="chargeCard",background_task_outcome="failed"';
  expect(body).toMatch(new RegExp(`^background_task_ended_total\\{${labels}[^}]*\\} 1$`, 'm'));
  expect(body).toMatch(
    new RegExp(`^background_task_attempt_duration_count\\{${labels}[^}]*\\} 1$`, 'm'),
  );
  expect(body).toMatch(
    new RegExp(`^background_task_attempt_duration_bucket\\{${labels}[^}]*le="0.001"\\} [01]$`, 'm'),
  );
  expect(body).toMatch(/^# TYPE background_task_attempt_duration histogram$/m);
  expect(body).toMatch(/^background_task_pending\{[^}]*\} 0$/m);
  expect(body).toMatch(/^background_task_running\{[^}]*\} 0$/m);
  expect(body).not.toMatch(/request_id|requestId/); // no request ids in metric labels
}, 30_000);

test('with OTEL_TRACES_EXPORTER=console the request and its task print as one trace', async () => {
  const started = await demo({ OTEL_TRACES_EXPORTER: 'console' });
  await request(started.base).post('/failing-task').expect(202);
  const traceOf = (name: string) =>
    new RegExp(`traceId: '([0-9a-f]{32})',[^]*?name: '${name}'`).exec(started.output())?.[1];
  const taskTrace = await pollUntil(() => traceOf('background task chargeCard'), 'the task span');
  expect(traceOf('POST /failing-task')).toBe(taskTrace);
  expect(started.output()).toMatch(/'background_task.outcome': 'failed'/);
}, 30_000);

test('a metrics port already taken: the demo exits 1 and says to set METRICS_PORT', async () => {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const { port } = taken.address() as net.AddressInfo;
  try {
    const child = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', 'demo-app/server.ts'],
      {
        cwd: path.join(__dirname, '..'),
        env: { ...process.env, PORT: '0', METRICS_PORT: String(port), REDIS_URL: '' },
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toContain(`the metrics endpoint could not listen on 127.0.0.1:${port}`);
    expect(stderr).toContain('set METRICS_PORT to a free port, or to 0 to take any');
  } finally {
    taken.close();
  }
}, 30_000);

describe('with REDIS_URL', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  test('the bull-board dashboard at /admin/queues lists the queued job, through its page and its API', async () => {
    const { base } = await demo({ REDIS_URL: redis.url });
    await request(base).post('/send-notification/dana@example.com?message=welcome').expect(200);
    const page = await request(base).get('/admin/queues').expect(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.text).toMatch(/bull-board|Bull Dashboard/i);
    const waiting = await pollUntil(async () => {
      const api = await request(base)
        .get('/admin/queues/api/queues?activeQueue=demo-background-tasks&status=waiting&page=1')
        .expect(200);
      const [queue] = api.body.queues as Array<{
        name: string;
        counts: { waiting: number };
        jobs: unknown[];
      }>;
      return queue?.jobs.length > 0 ? queue : undefined;
    }, 'the job in the dashboard API');
    expect(waiting).toMatchObject({
      name: 'demo-background-tasks',
      counts: { waiting: 1 },
      jobs: [
        expect.objectContaining({
          name: 'send-notification',
          data: expect.objectContaining({
            payload: { email: 'dana@example.com', message: 'welcome' },
          }),
        }),
      ],
    });
  }, 30_000);

  test('a job that failed on a worker shows in the dashboard with its error', async () => {
    const { base } = await demo({ REDIS_URL: redis.url });
    // A worker whose notification task always fails: the job ends in BullMQ's failed set.
    const worker = startWorker({
      connection: { url: redis.url },
      queueName: 'demo-background-tasks',
      tasks: [
        defineTask('send-notification', () => {
          throw new Error('smtp server refused the message');
        }),
      ],
      logger: silent,
    });
    try {
      await request(base).post('/send-notification/erin@example.com?message=hi').expect(200);
      const failed = await pollUntil(
        async () => {
          const api = await request(base)
            .get('/admin/queues/api/queues?activeQueue=demo-background-tasks&status=failed&page=1')
            .expect(200);
          const [queue] = api.body.queues as Array<{ jobs: Array<Record<string, unknown>> }>;
          return queue?.jobs.find(
            (job) =>
              (job.data as { payload: { email: string } }).payload.email === 'erin@example.com',
          );
        },
        'the failed job in the dashboard API',
        20_000,
      );
      expect(failed).toMatchObject({
        name: 'send-notification',
        failedReason: 'smtp server refused the message',
      });
      expect(String((failed.stacktrace as string[]).at(-1))).toContain(
        'smtp server refused the message',
      );
    } finally {
      await worker.close();
    }
  }, 40_000);
});
