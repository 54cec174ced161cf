/**
 * One trace from the HTTP request through Redis to a worker in another process, each side with
 * its own OpenTelemetry SDK: the hand-off is a PRODUCER span under the request span, the job
 * carries its W3C trace context, and the worker's CONSUMER span for the job is its child, in the
 * same trace, with the job id. The worker's metrics say `durable: true`. The queue's enqueue runs
 * inside the PRODUCER span, so a span its Redis client starts is the PRODUCER's child. A request
 * the upstream did not sample (`traceparent` flags `00`) still hands its trace to the worker: its
 * span there is in the same trace and, under the SDK's default sampler, not sampled either.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import express from 'express';
import request from 'supertest';
import { backgroundTasks, type DurableQueue } from '../lib';
import { bullmqDurable, type BullmqDurable } from '../lib/bullmq';
import { recordTask } from './support/durable-tasks';
import { isChildOf, pointsOf, registerOtel, serverSpans } from './support/otel';
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

/** The web side on `queue`: `POST /signup?id=…` hands `recordTask` with that id to it, under a SERVER span. */
function tracedApp(queue: DurableQueue) {
  const bg = backgroundTasks({ durable: queue });
  const app = express();
  app.use(serverSpans((req) => `${req.method} ${req.path}`));
  app.use(bg);
  app.post('/signup', (req, res) => {
    res.locals.backgroundTasks.add(recordTask, { id: String(req.query.id) });
    res.status(202).end();
  });
  return { app, bg };
}

/** The worker's line for the job of `recordTask` with this id, once it has completed. */
const completedJob = (id: string) =>
  untilWorker(
    'completed',
    (event) => (event.data as { payload: { id: string } }).payload.id === id,
  );

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
  const { app, bg } = tracedApp(durable);
  await request(app).post('/signup?id=traced-1').set('X-Request-Id', 'trace-req-1').expect(202);
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

  const completed = await completedJob('traced-1');
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

test("the queue's enqueue runs inside the PRODUCER span: a span its Redis client starts is the PRODUCER's child", async () => {
  // What a Redis or BullMQ instrumentation does: a client span under whatever span is active
  // when the command is sent.
  const instrumented: DurableQueue = {
    enqueue: (job) =>
      tracer.startActiveSpan('bullmq add', (span) =>
        durable.enqueue(job).finally(() => span.end()),
      ),
  };
  const { app, bg } = tracedApp(instrumented);
  await request(app).post('/signup?id=traced-2').set('X-Request-Id', 'trace-req-2').expect(202);
  await bg.idle();
  expect(bg.stats()).toMatchObject({ enqueued: 1 });

  const producer = otel
    .spansNamed('enqueue record')
    .find((span) => span.attributes['background_task.request_id'] === 'trace-req-2')!;
  const [client] = otel.spansNamed('bullmq add');
  expect(isChildOf(client, producer.spanContext())).toBe(true);
  await completedJob('traced-2');
}, 60_000);

test('a request the upstream did not sample (traceparent flags 00) still hands its trace to the worker: the job carries it with flags 00, the worker span is in that trace and not sampled either', async () => {
  const traceId = randomBytes(16).toString('hex');
  const upstreamSpanId = randomBytes(8).toString('hex');
  const { app, bg } = tracedApp(durable);
  await request(app)
    .post('/signup?id=unsampled-1')
    .set('traceparent', `00-${traceId}-${upstreamSpanId}-00`)
    .expect(202);
  await bg.idle();
  expect(bg.stats()).toMatchObject({ enqueued: 1 });
  const inTrace = (spans: Array<{ traceId: string }>) =>
    spans.filter((span) => span.traceId === traceId);
  // Nothing of the request was recorded here: its span and the PRODUCER span were not sampled.
  expect(inTrace(otel.spans().map((span) => span.spanContext()))).toEqual([]);

  const run = await untilWorker('run', (event) => event.id === 'unsampled-1');
  const completed = await completedJob('unsampled-1');
  // The PRODUCER span's own context: the upstream's trace, a span id of its own, flags 00.
  const carried = (completed.data as { trace?: { traceparent: string } }).trace;
  expect(carried?.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
  const producerSpanId = carried!.traceparent.split('-')[2];
  expect(producerSpanId).not.toBe(upstreamSpanId);
  // The task ran in a span of that trace, of its own, that the worker's sampler left out as its
  // parent was: a worker that lost the context would have sampled a new root span.
  expect(run.activeSpan).toMatchObject({
    traceId,
    traceFlags: TraceFlags.NONE,
    recording: false,
  });
  expect((run.activeSpan as { spanId: string }).spanId).not.toBe(producerSpanId);
  const workerSpans = completed.spans as WorkerSpan[];
  expect(inTrace(workerSpans)).toEqual([]);
  expect(
    workerSpans.filter(
      (span) => span.attributes['background_task.job_id'] === String(completed.jobId),
    ),
  ).toEqual([]);
}, 60_000);
