/**
 * What OpenTelemetry sees, with a real SDK registered (tracer provider with an in-memory
 * exporter, the AsyncLocalStorage context manager, a meter provider read on demand), on Express 5
 * and 4: each attempt is a span under the span active at add(), with its outcome; notifiers sit
 * under the error handler's span; the metrics agree with stats() after a mixed load.
 */
import {
  SpanKind,
  SpanStatusCode,
  context,
  trace,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import type { Histogram } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { Express, NextFunction, Request, Response } from 'express';
import request from 'supertest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  TaskTimeoutError,
  type BackgroundTasksOptions,
  type HttpErrorHandlerOptions,
} from '../lib';
import { DURATION_BUCKETS, INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION } from '../lib/telemetry';
import { EXPRESS_VERSIONS, gate, makeApp, type ExpressFactory } from './support/apps';
import { isChildOf, pointsOf, registerOtel, total } from './support/otel';

const otel = registerOtel();
const tracer = trace.getTracer('test-app');

/** The request spans the apps made, by request id: what an HTTP instrumentation would make. */
const requestSpans = new Map<string, Span>();

/**
 * An app whose first middleware starts a SERVER span for each request and runs the rest of the
 * request inside it, as @opentelemetry/instrumentation-http would.
 */
function tracedApp(
  createExpress: ExpressFactory,
  routes: (app: Express) => void,
  options: {
    tasks?: Omit<BackgroundTasksOptions, 'logger'>;
    errors?: HttpErrorHandlerOptions;
  } = {},
) {
  return makeApp(
    createExpress,
    (app) => {
      routes(app);
    },
    { ...options, before: traceRequests },
  );
}

function traceRequests(req: Request, res: Response, next: NextFunction): void {
  const span = tracer.startSpan(`${req.method} ${req.path}`, { kind: SpanKind.SERVER });
  requestSpans.set(String(req.headers['x-request-id']), span);
  res.on('finish', () => span.end());
  context.with(trace.setSpan(context.active(), span), next);
}

const contextOf = (requestId: string): SpanContext => requestSpans.get(requestId)!.spanContext();
const taskSpans = (name: string) => otel.spansNamed(`background task ${name}`);

test('the tracer and meter are named after the package, with its version', () => {
  const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));
  expect(INSTRUMENTATION_NAME).toBe(pkg.name);
  expect(INSTRUMENTATION_VERSION).toBe(pkg.version);
});

describe.each(EXPRESS_VERSIONS)('%s', (version, createExpress) => {
  const tag = version.replace(/\W/g, '');

  test('a task is an INTERNAL span under the request span, started after the response, with its attributes', async () => {
    const name = `sendWelcome${tag}`;
    const id = `span-1-${tag}`;
    const requestEndedFirst: boolean[] = [];
    const { app, bg } = tracedApp(createExpress, (app) => {
      app.post('/signup', (_req, res) => {
        res.locals.backgroundTasks.add({
          name,
          run: () =>
            void requestEndedFirst.push((requestSpans.get(id) as unknown as ReadableSpan).ended),
        });
        res.status(201).end();
      });
    });
    await request(app).post('/signup').set('X-Request-Id', id).expect(201);
    await bg.idle();
    const [span] = taskSpans(name);
    const requestSpan = otel.spans().find((s) => s.spanContext().spanId === contextOf(id).spanId)!;
    expect(span.kind).toBe(SpanKind.INTERNAL);
    expect(isChildOf(span, contextOf(id))).toBe(true);
    expect(span.attributes).toEqual({
      'background_task.name': name,
      'background_task.attempt': 1,
      'background_task.request_id': id,
      'background_task.outcome': 'succeeded',
    });
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.instrumentationScope).toMatchObject({
      name: INSTRUMENTATION_NAME,
      version: INSTRUMENTATION_VERSION,
    });
    // The request span had ended when the task ran, and was exported first (SimpleSpanProcessor
    // exports a span as it ends). Start and end times of different spans are not comparable to
    // the millisecond: the SDK corrects each span's clock by Date.now() when it starts.
    expect(requestEndedFirst).toEqual([true]);
    const order = otel.spans();
    expect(order.indexOf(requestSpan)).toBeLessThan(order.indexOf(span));
  });

  test('the task runs inside its span: its own spans are its children', async () => {
    const name = `withChild${tag}`;
    const seen: Array<string | undefined> = [];
    const { app, bg } = tracedApp(createExpress, (app) => {
      app.get('/', (_req, res) => {
        res.locals.backgroundTasks.add({
          name,
          run: async () => {
            seen.push(trace.getActiveSpan()?.spanContext().spanId);
            await tracer.startActiveSpan('query db', async (child) => child.end());
          },
        });
        res.end();
      });
    });
    await request(app).get('/').set('X-Request-Id', `child-${tag}`).expect(200);
    await bg.idle();
    const [span] = taskSpans(name);
    expect(seen).toEqual([span.spanContext().spanId]);
    const query = otel.spansNamed('query db').find((s) => isChildOf(s, span.spanContext()));
    expect(query).toBeDefined();
  });

  test.each<[string, () => unknown, string, string]>([
    [
      'a sync throw',
      () => {
        throw new Error('sync boom');
      },
      'failed',
      'sync boom',
    ],
    ['a rejection', () => Promise.reject(new TypeError('async boom')), 'failed', 'async boom'],
    [
      'a thrown non-Error',
      () => Promise.reject('a string'),
      'failed',
      "non-error value thrown: 'a string'",
    ],
  ])(
    '%s: outcome failed, status ERROR, the exception recorded',
    async (_what, run, outcome, message) => {
      const name = `failing${tag}${_what.replace(/\W/g, '')}`;
      const { app, bg } = tracedApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          res.locals.backgroundTasks.add({ name, run });
          res.end();
        });
      });
      await request(app).get('/').set('X-Request-Id', `fail-${name}`).expect(200);
      await bg.idle();
      const [span] = taskSpans(name);
      expect(span.attributes['background_task.outcome']).toBe(outcome);
      expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message });
      expect(span.events).toEqual([
        expect.objectContaining({
          name: 'exception',
          attributes: expect.objectContaining({ 'exception.message': message }),
        }),
      ]);
    },
  );

  test('a timeout: outcome timed_out, status ERROR, the TaskTimeoutError recorded', async () => {
    const name = `slow${tag}`;
    const { app, bg } = tracedApp(createExpress, (app) => {
      app.get('/', (_req, res) => {
        res.locals.backgroundTasks.add({
          name,
          timeoutMs: 20,
          run: ({ signal }) => new Promise((resolve) => signal.addEventListener('abort', resolve)),
        });
        res.end();
      });
    });
    await request(app).get('/').set('X-Request-Id', `slow-${tag}`).expect(200);
    await bg.idle();
    const [span] = taskSpans(name);
    expect(span.attributes['background_task.outcome']).toBe('timed_out');
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.events[0].attributes).toMatchObject({
      'exception.type': new TaskTimeoutError('').name,
      'exception.message': 'task timed out after 20 ms',
    });
  });

  test('abandoned by drain(): outcome abandoned, status ERROR', async () => {
    const name = `held${tag}`;
    const started = gate();
    const { app, bg } = tracedApp(createExpress, (app) => {
      app.get('/', (_req, res) => {
        res.locals.backgroundTasks.add({
          name,
          timeoutMs: 0,
          run: () => (started.open(), new Promise(() => undefined)),
        });
        res.end();
      });
    });
    await request(app).get('/').set('X-Request-Id', `held-${tag}`).expect(200);
    await started.promise;
    await expect(bg.drain({ timeoutMs: 10 })).resolves.toEqual({ completed: false, abandoned: 1 });
    const [span] = taskSpans(name);
    expect(span.attributes['background_task.outcome']).toBe('abandoned');
    expect(span.status).toEqual({
      code: SpanStatusCode.ERROR,
      message: 'task abandoned by drain()',
    });
    expect(span.events[0]).toMatchObject({
      name: 'exception',
      attributes: {
        'exception.type': 'TaskAbandonedError',
        'exception.message': 'task abandoned by drain()',
      },
    });
  });

  test('a retried task has one span per attempt, each under the request span', async () => {
    const name = `flaky${tag}`;
    let calls = 0;
    const { app, bg } = tracedApp(createExpress, (app) => {
      app.get('/', (_req, res) => {
        res.locals.backgroundTasks.add({
          name,
          retries: 2,
          retryDelayMs: 1,
          run: () => {
            if (++calls < 3) throw new Error(`attempt ${calls} failed`);
          },
        });
        res.end();
      });
    });
    const id = `flaky-${tag}`;
    await request(app).get('/').set('X-Request-Id', id).expect(200);
    await bg.idle();
    const spans = taskSpans(name);
    expect(
      spans.map((span) => [
        span.attributes['background_task.attempt'],
        span.attributes['background_task.outcome'],
        span.status.code,
      ]),
    ).toEqual([
      [1, 'failed', SpanStatusCode.ERROR],
      [2, 'failed', SpanStatusCode.ERROR],
      [3, 'succeeded', SpanStatusCode.UNSET],
    ]);
    for (const span of spans) expect(isChildOf(span, contextOf(id))).toBe(true);
  });

  test('notifiers queued by httpErrorHandler() sit under the span active in the error handler', async () => {
    const name = `notifyOps${tag}`;
    const handlerSpans: SpanContext[] = [];
    const { app, onError } = tracedApp(
      createExpress,
      (app) => {
        app.get('/', () => {
          throw new Error('route failed');
        });
        // An error middleware before the handler that runs it inside a span of its own.
        app.use((err: unknown, _req: Request, _res: Response, next: NextFunction) =>
          tracer.startActiveSpan('handle error', (span) => {
            handlerSpans.push(span.spanContext());
            next(err);
            span.end();
          }),
        );
      },
      { errors: { notify: Object.defineProperty(() => undefined, 'name', { value: name }) } },
    );
    await request(app).get('/').set('X-Request-Id', `notify-${tag}`).expect(500);
    await onError.idle();
    const [span] = taskSpans(name);
    expect(isChildOf(span, handlerSpans[0])).toBe(true);
  });
});

describe('metrics', () => {
  test('the attempt histogram is in seconds, with buckets from a millisecond to minutes', async () => {
    const all = await otel.collect();
    const histogram = all.find((m) => m.descriptor.name === 'background_task.attempt.duration');
    expect(histogram?.descriptor).toMatchObject({ unit: 's' });
    const [point] = pointsOf<Histogram>(all, 'background_task.attempt.duration');
    expect(point.value.buckets.boundaries).toEqual(DURATION_BUCKETS);
    expect(DURATION_BUCKETS[0]).toBe(0.001);
    expect(DURATION_BUCKETS.at(-1)).toBeGreaterThanOrEqual(60);
  });

  test.each(EXPRESS_VERSIONS)(
    '%s: after a mixed load the counters agree with stats(), and their attributes are low-cardinality',
    async (version, createExpress) => {
      const prefix = `mix${version.replace(/\W/g, '')}`;
      const held = gate();
      const { app, bg } = makeApp(
        createExpress,
        (app) => {
          app.get('/', (_req, res) => {
            const tasks = res.locals.backgroundTasks;
            tasks.add({ name: `${prefix}Ok`, run: () => undefined });
            tasks.add({ name: `${prefix}Ok`, run: async () => undefined });
            tasks.add({ name: `${prefix}Fail`, run: () => Promise.reject(new Error('no')) });
            tasks.add({
              name: `${prefix}Slow`,
              timeoutMs: 10,
              run: ({ signal }) =>
                new Promise((resolve) => signal.addEventListener('abort', resolve)),
            });
            tasks.add({
              name: `${prefix}Held`,
              timeoutMs: 0,
              run: () => (held.open(), new Promise(() => undefined)),
            });
            tasks.add({ name: `${prefix}Rejected`, run: () => undefined }); // over maxPending
            tasks.add({ name: `${prefix}Rejected`, run: () => undefined });
            res.end();
          });
        },
        { tasks: { maxPending: 5, concurrency: 8 } },
      );
      await request(app).get('/').set('X-Request-Id', prefix).expect(200);
      await held.promise;
      await bg.drain({ timeoutMs: 200 });
      const stats = bg.stats();
      expect(stats).toMatchObject({
        succeeded: 2,
        failed: 1,
        timedOut: 1,
        rejected: 2,
        abandoned: 1,
      });
      const all = await otel.collect();
      const mine = (name: string) =>
        pointsOf<number | Histogram>(all, name).filter((point) =>
          String(point.attributes['background_task.name']).startsWith(prefix),
        );
      const byOutcome = (name: string) => {
        const sums: Record<string, number> = {};
        for (const point of mine(name)) {
          const outcome = String(point.attributes['background_task.outcome']);
          const value = typeof point.value === 'number' ? point.value : point.value.count;
          sums[outcome] = (sums[outcome] ?? 0) + value;
        }
        return sums;
      };
      // Every point of this load, under any name, adds up to what stats() says ended.
      expect(byOutcome('background_task.ended')).toEqual({
        succeeded: stats.succeeded,
        failed: stats.failed,
        timed_out: stats.timedOut,
        rejected: stats.rejected,
        abandoned: stats.abandoned,
      });
      expect(byOutcome('background_task.attempt.duration')).toEqual({
        succeeded: 2,
        failed: 1,
        timed_out: 1,
        abandoned: 1,
      });
      // Each outcome under the name of the task that had it, and only there.
      expect(
        mine('background_task.ended').map((point) => [
          point.attributes['background_task.name'],
          point.attributes['background_task.outcome'],
          point.value,
        ]),
      ).toEqual(
        expect.arrayContaining([
          [`${prefix}Ok`, 'succeeded', 2],
          [`${prefix}Fail`, 'failed', 1],
          [`${prefix}Slow`, 'timed_out', 1],
          [`${prefix}Rejected`, 'rejected', 2],
          [`${prefix}Held`, 'abandoned', 1],
        ]),
      );
      expect(mine('background_task.ended')).toHaveLength(5);
      for (const name of ['background_task.ended', 'background_task.attempt.duration']) {
        for (const point of mine(name)) {
          // In the web process: no `durable` (only a worker's points say `durable: true`).
          expect(Object.keys(point.attributes).sort()).toEqual([
            'background_task.name',
            'background_task.outcome',
          ]);
        }
      }
    },
  );

  test('the pending and running gauges read what stats() says, summed over the live middlewares', async () => {
    const release = gate();
    const { app, bg } = makeApp(
      EXPRESS_VERSIONS[0][1],
      (app) => {
        app.get('/', (_req, res) => {
          for (let i = 0; i < 5; i++)
            res.locals.backgroundTasks.add({ name: 'gauged', run: () => release.promise });
          res.end();
        });
      },
      { tasks: { concurrency: 2 } },
    );
    const other = makeApp(EXPRESS_VERSIONS[1][1], (app) => {
      app.get('/', (_req, res) => {
        res.locals.backgroundTasks.add({ name: 'gaugedToo', run: () => release.promise });
        res.end();
      });
    });
    await request(app).get('/').expect(200);
    await request(other.app).get('/').expect(200);
    const all = await otel.collect();
    expect(bg.stats()).toMatchObject({ pending: 4, running: 1 });
    expect(other.bg.stats()).toMatchObject({ pending: 0, running: 1 });
    expect(total(all, 'background_task.pending')).toBe(4);
    expect(total(all, 'background_task.running')).toBe(2);
    release.open();
    await Promise.all([bg.idle(), other.bg.idle()]);
    const after = await otel.collect();
    expect([
      total(after, 'background_task.pending'),
      total(after, 'background_task.running'),
    ]).toEqual([0, 0]);
  });
});
