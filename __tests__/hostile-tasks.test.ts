/**
 * Tasks that a hostile or careless caller hands to `add()`: a task object whose getters throw
 * (a TypeError naming the field, with the getter's error as its cause, and nothing queued), and
 * names and request ids of a megabyte (clipped to `MAX_NAME_CHARS` with a marker in every log
 * line, span name, span attribute and metric attribute). With a real OpenTelemetry SDK, on
 * Express 5 and 4.
 */
import request from 'supertest';
import { LOG_MESSAGES } from '../lib';
import { MAX_NAME_CHARS } from '../lib/thrown';
import { EXPRESS_VERSIONS, makeApp } from './support/apps';
import { registerOtel } from './support/otel';

const otel = registerOtel();
const megabyte = 'n'.repeat(1024 * 1024);
/** What a name of a megabyte becomes. */
const clipped = (text: string) =>
  `${text.slice(0, MAX_NAME_CHARS)}… [cut: ${text.length} characters in all]`;

const getterThrows = (field: string) => {
  const task: Record<string, unknown> = { run: () => undefined };
  const error = new Error(`${field} getter exploded`);
  Object.defineProperty(task, field, {
    get() {
      throw error;
    },
  });
  return { task, error };
};

describe.each(EXPRESS_VERSIONS)('%s', (version, createExpress) => {
  test.each(['run', 'name', 'timeoutMs', 'retries', 'retryDelayMs'])(
    'a task object whose %s getter throws: add() throws a TypeError naming the field, its cause the error',
    async (field) => {
      const { task, error } = getterThrows(field);
      let thrown: unknown;
      const { app, bg } = makeApp(createExpress, (app) => {
        app.get('/', (_req, res) => {
          try {
            res.locals.backgroundTasks.add(task as never);
          } catch (caught) {
            thrown = caught;
          }
          res.end();
        });
      });
      await request(app).get('/').expect(200);
      await bg.idle();
      expect(thrown).toBeInstanceOf(TypeError);
      expect((thrown as TypeError).message).toBe(
        `add(): reading the task's "${field}" threw (the error is the cause)`,
      );
      expect((thrown as TypeError).cause).toBe(error);
      expect(bg.stats()).toMatchObject({ pending: 0, succeeded: 0, failed: 0, rejected: 0 });
    },
  );

  test('a function whose name getter throws, and a proxy whose traps throw, give TypeErrors too', async () => {
    const fn = Object.defineProperty(() => undefined, 'name', {
      get() {
        throw new Error('name exploded');
      },
    });
    const proxy = new Proxy(
      {},
      {
        get() {
          throw new Error('trap exploded');
        },
      },
    );
    const messages: string[] = [];
    const { app, bg } = makeApp(createExpress, (app) => {
      app.get('/', (_req, res) => {
        for (const task of [fn, proxy]) {
          try {
            res.locals.backgroundTasks.add(task as never);
          } catch (caught) {
            messages.push(`${(caught as Error).name}: ${(caught as Error).message}`);
          }
        }
        res.end();
      });
    });
    await request(app).get('/').expect(200);
    await bg.idle();
    expect(messages).toEqual([
      `TypeError: add(): reading the task's "name" threw (the error is the cause)`,
      'TypeError: add(): reading the task threw (the error is the cause)',
    ]);
  });

  test('a run getter is read once, at add(): what it answers later does not run', async () => {
    const ran: string[] = [];
    let reads = 0;
    const task = {
      get run() {
        reads++;
        return reads === 1 ? () => void ran.push('first') : () => void ran.push('later');
      },
    };
    const { app, bg } = makeApp(createExpress, (app) => {
      app.get('/', (_req, res) => {
        res.locals.backgroundTasks.add(task);
        res.end();
      });
    });
    await request(app).get('/').expect(200);
    await bg.idle();
    expect({ ran, reads }).toEqual({ ran: ['first'], reads: 1 });
  });

  test('names and request ids of a megabyte are clipped in log lines, span names and attributes, and metric attributes', async () => {
    const longId = `${version}-${'i'.repeat(100_000)}`;
    const longFunction = { [megabyte]: () => Promise.reject(new Error('fails')) }[megabyte];
    const { app, bg, log } = makeApp(
      createExpress,
      (app) => {
        app.get('/', (_req, res) => {
          res.locals.backgroundTasks
            .add({ name: `o${megabyte}`, run: () => Promise.reject(new Error('fails')) })
            .add(longFunction)
            .add(() => undefined);
          res.end();
        });
      },
      {
        tasks: { maxPending: 2 },
        // An earlier middleware's id, of any length: the queue takes it clipped.
        before: (_req, res, next) => {
          res.locals.requestId = longId;
          next();
        },
      },
    );
    await request(app).get('/').expect(200);
    await bg.idle();
    const expectedNames = [clipped(`o${megabyte}`), clipped(megabyte)];
    // Compared by length and equality flags: a failure must not print megabytes.
    const failed = log.find(LOG_MESSAGES.taskFailed);
    expect(failed.map((line) => line.task === expectedNames[failed.indexOf(line)])).toEqual([
      true,
      true,
    ]);
    const rejected = log.records.filter((r) => r.message.includes('rejected'));
    expect(rejected.length).toBeGreaterThan(0);
    for (const record of [...failed, ...rejected]) {
      expect(record.line.length).toBeLessThan(16_384);
      expect(record.requestId === clipped(longId)).toBe(true);
    }
    const spans = otel
      .spans()
      .filter((span) => span.attributes['background_task.request_id'] === clipped(longId));
    expect(spans.map((span) => span.name.length)).toEqual(
      expectedNames.map((name) => `background task ${name}`.length),
    );
    const metrics = await otel.collect();
    for (const metric of metrics) {
      for (const point of metric.dataPoints) {
        const name = point.attributes['background_task.name'];
        if (name !== undefined)
          expect(String(name).length).toBeLessThanOrEqual(MAX_NAME_CHARS + 40);
      }
    }
  });
});
