/**
 * One trace from the HTTP request through Redis to a worker in another process, each side with
 * its own OpenTelemetry SDK: the hand-off is a PRODUCER span under the request span, the job
 * carries its W3C trace context, and the worker's CONSUMER span for the job is its child, in the
 * same trace, with the job id. The worker's metrics say `durable: true`.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import express from 'express';
import request from 'supertest';
import { backgroundTasks } from '../lib';
import { bullmqDurable, type BullmqDurable } from '../lib/bullmq';
import { recordTask } from './support/durable-tasks';
import { isChildOf, pointsOf, registerOtel } from './support/otel';
import { startRedis, type RedisServer } from './support/redis';

const otel = registerOtel();
const tracer = trace.getTracer('test-app');
const queueName = 'traced-tasks';

let redis: RedisServer;
let durable: BullmqDurable;
let worker: ChildProcessWithoutNullStreams;
const workerEvents: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  redis = await startRedis();
  durable = bullmqDurable({ connection: { url: redis.url }, queueName });
  worker = spawn(
    process.execPath,
    [
      '-r',
      'ts-node/register/transpile-only',
      path.join(__dirname, 'support/traced-worker-child.ts'),
    ],
    {
      cwd: path.join(__dirname, '..'),
      env: { ...process.env, REDIS_URL: redis.url, QUEUE_NAME: queueName },
    },
  );
  let buffered = '';
  worker.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) if (line.startsWith('{')) workerEvents.push(JSON.parse(line));
  });
  await untilWorker('ready');
}, 60_000);

afterAll(async () => {
  worker?.kill('SIGTERM');
  await durable?.close();
  await redis?.stop();
});

/** Resolves with the first event from the worker that satisfies `match`, as soon as it arrives. */
function untilWorker(
  name: string,
  match: (event: Record<string, unknown>) => boolean = () => true,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const found = workerEvents.find((event) => event.event === name && match(event));
      if (found === undefined) return false;
      worker.stdout.off('data', onData);
      worker.off('exit', onExit);
      resolve(found);
      return true;
    };
    const onData = () => void setImmediate(check);
    const onExit = (code: number | null) => reject(new Error(`worker exited (${code})`));
    if (check()) return;
    worker.stdout.on('data', onData);
    worker.on('exit', onExit);
  });
}

interface WorkerSpan {
  name: string;
  kind: SpanKind;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
  status: { code: SpanStatusCode };
}

test('the worker span continues the request trace: CONSUMER, child of the PRODUCER span, with the job id', async () => {
  const bg = backgroundTasks({ durable });
  const app = express();
  app.use((req, res, next) => {
    const span = tracer.startSpan(`${req.method} ${req.path}`, { kind: SpanKind.SERVER });
    res.on('finish', () => span.end());
    context.with(trace.setSpan(context.active(), span), next);
  });
  app.use(bg);
  app.post('/signup', (_req, res) => {
    res.locals.backgroundTasks.add(recordTask, { id: 'traced-1' });
    res.status(202).end();
  });
  await request(app).post('/signup').set('X-Request-Id', 'trace-req-1').expect(202);
  await bg.idle();
  expect(bg.stats()).toMatchObject({ enqueued: 1 });

  const [requestSpan] = otel.spansNamed('POST /signup');
  const [producer] = otel.spansNamed('enqueue record');
  expect(producer.kind).toBe(SpanKind.PRODUCER);
  expect(isChildOf(producer, requestSpan.spanContext())).toBe(true);
  expect(producer.attributes).toMatchObject({
    'background_task.name': 'record',
    'background_task.request_id': 'trace-req-1',
    'background_task.outcome': 'enqueued',
  });

  const completed = await untilWorker('completed');
  const spans = completed.spans as WorkerSpan[];
  const consumer = spans.find((span) => span.name === 'background task record')!;
  expect(consumer).toMatchObject({
    kind: SpanKind.CONSUMER,
    traceId: requestSpan.spanContext().traceId,
    parentSpanId: producer.spanContext().spanId,
    attributes: {
      'background_task.name': 'record',
      'background_task.attempt': 1,
      'background_task.request_id': 'trace-req-1',
      'background_task.job_id': String(completed.jobId),
      'background_task.outcome': 'succeeded',
    },
    status: { code: SpanStatusCode.UNSET },
  });

  const metrics = completed.metrics as Array<{
    name: string;
    points: Array<{ attributes: Record<string, unknown>; value: number }>;
  }>;
  const worked = (name: string) =>
    metrics
      .find((metric) => metric.name === name)
      ?.points.filter(
        (point) =>
          point.attributes['background_task.durable'] === true &&
          point.attributes['background_task.outcome'] === 'succeeded' &&
          point.attributes['background_task.name'] === 'record',
      )
      .reduce((sum, point) => sum + point.value, 0);
  expect(worked('background_task.ended')).toBe(1);
  expect(worked('background_task.attempt.duration')).toBe(1);

  const webMetrics = await otel.collect();
  const enqueued = pointsOf(webMetrics, 'background_task.ended', {
    'background_task.outcome': 'enqueued',
  });
  expect(enqueued.map((point) => [point.attributes, point.value])).toEqual([
    [{ 'background_task.name': 'record', 'background_task.outcome': 'enqueued' }, 1],
  ]);
}, 60_000);
