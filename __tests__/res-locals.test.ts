/**
 * `res.locals` with the middleware mounted still serialises and prints short: the queue at
 * `res.locals.backgroundTasks` shows only its public API (JSON `{ "size": n }`, nothing
 * enumerable), before a task is added, after, and while its tasks run. Express's own
 * `test/res.locals.js` sends `res.json(res.locals)`; so do these, on Express 5 and 4.
 */
import { inspect } from 'node:util';
import request from 'supertest';
import { gate, EXPRESS_VERSIONS, makeApp } from './support/apps';

describe.each(EXPRESS_VERSIONS)('%s', (_name, createExpress) => {
  test('res.json(res.locals) answers 200 with the request id and the queue as { size }', async () => {
    const { app, bg } = makeApp(createExpress, (app) => {
      app.get('/empty', (_req, res) => void res.json(res.locals));
      app.get('/queued', (_req, res) => {
        res.locals.backgroundTasks.add(function first() {}).add(function second() {});
        res.json(res.locals);
      });
    });
    await request(app)
      .get('/empty')
      .set('X-Request-Id', 'locals-1')
      .expect(200, { requestId: 'locals-1', backgroundTasks: { size: 0 } });
    await request(app)
      .get('/queued')
      .set('X-Request-Id', 'locals-2')
      .expect(200, { requestId: 'locals-2', backgroundTasks: { size: 2 } });
    await bg.idle();
    expect(bg.stats()).toMatchObject({ succeeded: 2 });
  });

  test('the queue has no enumerable field, and util.inspect(res.locals) stays short', async () => {
    const seen: Array<{ keys: string[]; printed: string }> = [];
    const { app, bg } = makeApp(createExpress, (app) => {
      app.get('/', (_req, res) => {
        const look = () =>
          seen.push({
            keys: Object.keys(res.locals.backgroundTasks),
            printed: inspect(res.locals, { depth: Infinity }),
          });
        look();
        res.locals.backgroundTasks.add(function later() {});
        look();
        res.end();
      });
    });
    await request(app).get('/').set('X-Request-Id', 'short').expect(200);
    await bg.idle();
    expect(seen.map(({ keys }) => keys)).toEqual([[], []]);
    expect(seen.map(({ printed }) => printed.replace(/\s+/g, ' '))).toEqual([
      "[Object: null prototype] { requestId: 'short', backgroundTasks: BackgroundTasks { size: 0 } }",
      "[Object: null prototype] { requestId: 'short', backgroundTasks: BackgroundTasks { size: 1 } }",
    ]);
  });

  test('while a task runs after the response, the queue still serialises as { size: 0 }', async () => {
    const running = gate();
    const finish = gate();
    const serialised: string[] = [];
    const { app, bg } = makeApp(createExpress, (app) => {
      app.get('/', (_req, res) => {
        const locals = res.locals;
        locals.backgroundTasks.add({
          name: 'long',
          run: async () => {
            running.open();
            await finish.promise;
          },
        });
        // Read once the response has ended and the task runs: the runner's record exists then.
        void running.promise.then(() => serialised.push(JSON.stringify(locals)));
        res.end();
      });
    });
    await request(app).get('/').set('X-Request-Id', 'running').expect(200);
    await running.promise;
    await new Promise((resolve) => setImmediate(resolve));
    finish.open();
    await bg.idle();
    expect(serialised).toEqual(['{"requestId":"running","backgroundTasks":{"size":0}}']);
  });

  test('the queue the error handler makes (no backgroundTasks() mounted) serialises too', async () => {
    const { app, onError } = makeApp(
      createExpress,
      (app) => {
        app.get('/', () => {
          throw new Error('boom');
        });
      },
      {
        mountTasks: false,
        errors: {
          notify: () => undefined,
          overrides: [
            { match: 500, handle: (_err, _req, res) => void res.status(500).json(res.locals) },
          ],
        },
      },
    );
    const res = await request(app).get('/').set('X-Request-Id', 'from-handler').expect(500);
    expect(res.body).toEqual({ requestId: 'from-handler', backgroundTasks: { size: 1 } });
    await onError.idle();
    expect(onError.stats()).toMatchObject({ succeeded: 1 });
  });
});
