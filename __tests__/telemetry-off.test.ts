/**
 * With no OpenTelemetry SDK registered (as in every other test file but the telemetry ones),
 * the library records nothing and nothing throws: tasks run outside any span, the outcome is the
 * same; and a middleware made before an SDK is registered is traced and measured once it is.
 */
import { trace } from '@opentelemetry/api';
import request from 'supertest';
import { EXPRESS_VERSIONS, makeApp } from './support/apps';
import { registerOtel, total } from './support/otel';

test.each(EXPRESS_VERSIONS)(
  '%s: tasks run and fail as usual, in no span',
  async (_name, createExpress) => {
    const activeSpans: unknown[] = [];
    const { app, bg, log } = makeApp(createExpress, (app) => {
      app.get('/', (_req, res) => {
        res.locals.backgroundTasks
          .add(function fine() {
            activeSpans.push(trace.getActiveSpan());
          })
          .add(async function broken() {
            activeSpans.push(trace.getActiveSpan());
            throw new Error('broken');
          });
        res.end();
      });
    });
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(activeSpans).toEqual([undefined, undefined]);
    expect(bg.stats()).toMatchObject({ succeeded: 1, failed: 1 });
    expect(log.find('background task failed')).toHaveLength(1);
  },
);

test('a middleware made before the SDK is registered is traced and measured once it is', async () => {
  const { app, bg } = makeApp(EXPRESS_VERSIONS[0][1], (app) => {
    app.get('/', (_req, res) => {
      res.locals.backgroundTasks.add({ name: 'beforeAndAfter', run: () => undefined });
      res.end();
    });
  });
  await request(app).get('/').expect(200);
  await bg.idle();
  // The metrics API has no proxy, unlike the trace API: the library looks the provider up again.
  const otel = registerOtel();
  await request(app).get('/').expect(200);
  await bg.idle();
  expect(otel.spansNamed('background task beforeAndAfter')).toHaveLength(1);
  expect(
    total(await otel.collect(), 'background_task.ended', {
      'background_task.name': 'beforeAndAfter',
    }),
  ).toBe(1);
  expect(bg.stats()).toMatchObject({ succeeded: 2 });
});
