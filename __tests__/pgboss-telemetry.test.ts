/**
 * Tasks added with addInTransaction(), seen through a real OpenTelemetry SDK against a real
 * PostgreSQL: the insert's PRODUCER span (the insert runs inside it) and the attempt's span under
 * the request's span, the `left_to_workers` outcome on spans and metrics, the worker's CONSUMER
 * span continuing the trace of a job left to it (also when the request was not sampled: then the
 * job carries the trace context with flags `00`, and the worker's span is in that trace, not
 * sampled either), and after a mixed load the counters by outcome equal to `stats()` on both
 * sides, as every other outcome's are.
 */
import { randomBytes } from 'node:crypto';
import { SpanKind, SpanStatusCode, TraceFlags, trace, type Span } from '@opentelemetry/api';
import type { MetricData } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import request from 'supertest';
import type { BackgroundTasksStats } from '../lib';
import { isChildOf, pointsOf, registerOtel, serverSpans } from './support/otel';
import { useOrdersDatabase } from './support/pgboss-database';
import { describePgBoss } from './support/pgboss-node';
import { runs, type OrderPayload } from './support/pgboss-tasks';
import { pollUntil } from './support/redis';

const otel = registerOtel();
const tracer = trace.getTracer('test-app');

/** A SERVER span per request, named by its X-Request-Id. */
const requestSpans = serverSpans((req) => `request ${req.get('x-request-id')}`);

/** The one ended span named `name`, of kind `kind`, of the request `requestId`. */
function spanOf(name: string, kind: SpanKind, requestId: string): ReadableSpan {
  const found = otel
    .spansNamed(name)
    .filter(
      (span) => span.kind === kind && span.attributes['background_task.request_id'] === requestId,
    );
  expect(found).toHaveLength(1);
  return found[0];
}

/** The points of `metric` for send-receipt, on the web side (`durable` false) or a worker's, summed by outcome. */
function byOutcome(all: MetricData[], metric: string, durable: boolean): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const point of pointsOf<number | { count: number }>(all, metric, {
    'background_task.name': 'send-receipt',
  })) {
    if ((point.attributes['background_task.durable'] === true) !== durable) continue;
    const outcome = String(point.attributes['background_task.outcome']);
    const value = typeof point.value === 'number' ? point.value : point.value.count;
    sums[outcome] = (sums[outcome] ?? 0) + value;
  }
  return sums;
}

/** The points of `metric` for send-receipt recorded between two collections, by outcome (zeros left out). */
function changes(
  before: MetricData[],
  after: MetricData[],
  metric: string,
  durable: boolean,
): Record<string, number> {
  const was = byOutcome(before, metric, durable);
  const changed: Record<string, number> = {};
  for (const [outcome, value] of Object.entries(byOutcome(after, metric, durable)))
    if (value !== (was[outcome] ?? 0)) changed[outcome] = value - (was[outcome] ?? 0);
  return changed;
}

/** The ended counters of stats(), under the outcome names of the metrics (zeros left out). */
function endedOf(stats: BackgroundTasksStats): Record<string, number> {
  const outcomes: Record<string, number> = {
    succeeded: stats.succeeded,
    failed: stats.failed,
    timed_out: stats.timedOut,
    rejected: stats.rejected,
    abandoned: stats.abandoned,
    enqueued: stats.enqueued,
    left_to_workers: stats.leftToWorkers,
  };
  return Object.fromEntries(Object.entries(outcomes).filter(([, value]) => value > 0));
}

describePgBoss('addInTransaction() tasks in spans, metrics and stats()', () => {
  const db = useOrdersDatabase();

  test('run here: the insert is a PRODUCER span and the attempt an INTERNAL span, both under the request span, the attempt with the job id; the metrics say succeeded', async () => {
    const setup = db.setUp({ before: requestSpans });
    const before = await otel.collect();
    await request(setup.app).post('/orders').set('X-Request-Id', 'tx-here').expect(201);
    await setup.bg.idle();
    const [requestSpan] = otel.spansNamed('request tx-here');
    const insert = spanOf('enqueue send-receipt', SpanKind.PRODUCER, 'tx-here');
    expect(isChildOf(insert, requestSpan.spanContext())).toBe(true);
    expect(insert.attributes['background_task.outcome']).toBe('enqueued');
    const [job] = await (await setup.worker()).boss.findJobs(setup.queueName);
    const attempt = spanOf('background task send-receipt', SpanKind.INTERNAL, 'tx-here');
    expect(attempt).toMatchObject({
      kind: SpanKind.INTERNAL,
      status: { code: SpanStatusCode.UNSET },
      attributes: {
        'background_task.name': 'send-receipt',
        'background_task.attempt': 1,
        'background_task.request_id': 'tx-here',
        'background_task.job_id': job.id,
        'background_task.outcome': 'succeeded',
      },
    });
    expect(isChildOf(attempt, requestSpan.spanContext())).toBe(true);
    const after = await otel.collect();
    for (const metric of ['background_task.ended', 'background_task.attempt.duration']) {
      expect(changes(before, after, metric, false)).toEqual({ succeeded: 1 });
    }
  });

  test("the insert runs inside its PRODUCER span: a span the database client starts is the PRODUCER's child", async () => {
    const setup = db.setUp({ before: requestSpans });
    // What a pg instrumentation does: a client span under whatever span is active when the
    // statement is sent. The real insert runs inside it.
    const insert = setup.durable.insert.bind(setup.durable);
    setup.durable.insert = (client, job, leaseMs) =>
      tracer.startActiveSpan('pg insert', (span) =>
        insert(client, job, leaseMs).finally(() => span.end()),
      );
    await request(setup.app).post('/orders').set('X-Request-Id', 'tx-client').expect(201);
    await setup.bg.idle();
    const producer = spanOf('enqueue send-receipt', SpanKind.PRODUCER, 'tx-client');
    const [client] = otel.spansNamed('pg insert');
    expect(isChildOf(client, producer.spanContext())).toBe(true);
    expect(setup.bg.stats()).toMatchObject({ succeeded: 1 });
  });

  test("left to the workers: a rolled-back task only in the ended counter; one drain() gave up while it ran with its attempt span and point, both left_to_workers; the worker's CONSUMER span continues the insert's trace", async () => {
    const setup = db.setUp({ before: requestSpans, payload: { hang: 'once' } });
    const worker = await setup.worker();
    const before = await otel.collect();
    await request(setup.app).post('/orders?mode=rollback').set('X-Request-Id', 'tx-rb').expect(409);
    await setup.bg.idle();
    const started = new Promise<void>((resolve) =>
      runs.once('run', (event: { event: string }) => event.event === 'started' && resolve()),
    );
    await request(setup.app).post('/orders').set('X-Request-Id', 'tx-drained').expect(201);
    await started;
    expect(await setup.bg.drain({ timeoutMs: 50 })).toEqual({ completed: false, abandoned: 1 });
    await pollUntil(() => worker.stats().succeeded === 1, 'the worker to run it');

    // The rolled-back one never started: no attempt span.
    expect(
      otel
        .spansNamed('background task send-receipt')
        .filter((span) => span.attributes['background_task.request_id'] === 'tx-rb'),
    ).toEqual([]);
    const attempt = spanOf('background task send-receipt', SpanKind.INTERNAL, 'tx-drained');
    expect(attempt).toMatchObject({
      kind: SpanKind.INTERNAL,
      status: { code: SpanStatusCode.ERROR },
      attributes: { 'background_task.outcome': 'left_to_workers' },
    });
    expect(attempt.events.map((event) => event.name)).toEqual(['exception']);
    const insert = spanOf('enqueue send-receipt', SpanKind.PRODUCER, 'tx-drained');
    const consumer = spanOf('background task send-receipt', SpanKind.CONSUMER, 'tx-drained');
    expect(consumer).toMatchObject({
      attributes: {
        'background_task.job_id': attempt.attributes['background_task.job_id'],
        'background_task.outcome': 'succeeded',
      },
    });
    expect(isChildOf(consumer, insert.spanContext())).toBe(true);

    const after = await otel.collect();
    const ended = (durable: boolean) => changes(before, after, 'background_task.ended', durable);
    const attempts = (durable: boolean) =>
      changes(before, after, 'background_task.attempt.duration', durable);
    expect(ended(false)).toEqual({ left_to_workers: 2 });
    expect(attempts(false)).toEqual({ left_to_workers: 1 });
    expect(ended(true)).toEqual({ succeeded: 1 });
    expect(attempts(true)).toEqual({ succeeded: 1 });
  });

  test("a request the upstream did not sample (traceparent flags 00): the insert's job carries its trace context with flags 00, and the worker's span for the job left to it is in that trace, not sampled either", async () => {
    const setup = db.setUp({ before: requestSpans, payload: { hang: 'once' } });
    await setup.worker();
    const traceId = randomBytes(16).toString('hex');
    const upstreamSpanId = randomBytes(8).toString('hex');
    const started = new Promise<void>((resolve) =>
      runs.once('run', (event: { event: string }) => event.event === 'started' && resolve()),
    );
    // Only the worker's run writes the receipt: the run here hangs until drain() gives up on it.
    const ranOnWorker = new Promise<Span | undefined>((resolve) => {
      const onRun = (event: { event: string }) => {
        if (event.event !== 'ran') return;
        runs.off('run', onRun);
        resolve(trace.getActiveSpan()); // emitted inside the task: its attempt span
      };
      runs.on('run', onRun);
    });
    await request(setup.app)
      .post('/orders')
      .set('X-Request-Id', 'tx-unsampled')
      .set('traceparent', `00-${traceId}-${upstreamSpanId}-00`)
      .expect(201);
    await started;
    expect(await setup.bg.drain({ timeoutMs: 50 })).toEqual({ completed: false, abandoned: 1 });
    const workerSpan = await ranOnWorker;

    const [job] = await (
      await setup.worker()
    ).boss.findJobs<OrderPayload & { trace?: { traceparent: string } }>(setup.queueName);
    expect(job.data.trace?.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
    const insertSpanId = job.data.trace!.traceparent.split('-')[2];
    expect(insertSpanId).not.toBe(upstreamSpanId);
    // A worker that lost the context would have sampled a new root span.
    expect({ ...workerSpan?.spanContext(), recording: workerSpan?.isRecording() }).toMatchObject({
      traceId,
      traceFlags: TraceFlags.NONE,
      recording: false,
    });
    expect(workerSpan!.spanContext().spanId).not.toBe(insertSpanId);
    // Nothing of that trace was recorded, here or on the worker.
    expect(otel.spans().filter((span) => span.spanContext().traceId === traceId)).toEqual([]);
    expect(
      otel
        .spans()
        .filter((span) => span.attributes['background_task.request_id'] === 'tx-unsampled'),
    ).toEqual([]);
  });

  test('after a mixed load (run here, failed here then on a worker, rolled back, given up by drain()) the counters by outcome equal stats() on the web side and on the worker, and the attempt points count the attempt spans', async () => {
    const setup = db.setUp({ before: requestSpans });
    const worker = await setup.worker();
    const before = await otel.collect();
    const spansBefore = otel.spansNamed('background task send-receipt').length;
    await request(setup.app).post('/orders').set('X-Request-Id', 'mix-1').expect(201);
    await request(setup.app).post('/orders?fail=1').set('X-Request-Id', 'mix-2').expect(201);
    await request(setup.app).post('/orders?mode=rollback').set('X-Request-Id', 'mix-3').expect(409);
    await setup.bg.idle();
    const started = new Promise<void>((resolve) =>
      runs.once('run', (event: { event: string }) => event.event === 'started' && resolve()),
    );
    await request(setup.app).post('/orders?hang=once').set('X-Request-Id', 'mix-4').expect(201);
    await started;
    await setup.bg.drain({ timeoutMs: 50 });
    // The worker: the failed one's retries (pg-boss counts neither attempt here: two attempts, both
    // failing, then the dead-letter queue), and the given-back one.
    await pollUntil(
      () => worker.stats().failed === 1 && worker.stats().succeeded === 1,
      "the worker's two jobs",
      20_000,
    );

    const web = setup.bg.stats();
    expect(web).toMatchObject({
      succeeded: 1,
      failed: 1,
      leftToWorkers: 2,
      pending: 0,
      running: 0,
    });
    const after = await otel.collect();
    for (const [durable, stats] of [
      [false, web],
      [true, worker.stats()],
    ] as const) {
      expect(changes(before, after, 'background_task.ended', durable)).toEqual(endedOf(stats));
    }
    // Here: 1 succeeded, 2 failed (the fail=1 task's two attempts), 1 left to the workers; on the
    // worker: 2 failed, 1 succeeded.
    const spans = otel.spansNamed('background task send-receipt').slice(spansBefore);
    const attemptPoints = (durable: boolean) =>
      Object.values(changes(before, after, 'background_task.attempt.duration', durable)).reduce(
        (sum, value) => sum + value,
        0,
      );
    expect(spans.filter((span) => span.kind === SpanKind.INTERNAL)).toHaveLength(4);
    expect(attemptPoints(false)).toBe(4);
    expect(spans.filter((span) => span.kind === SpanKind.CONSUMER)).toHaveLength(3);
    expect(attemptPoints(true)).toBe(3);
  }, 30_000);
});
