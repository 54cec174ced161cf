/**
 * `add(definedTask, payload)` with `durable: pgBossDurable(...)`, against a real PostgreSQL: as
 * with BullMQ, the task is handed off when the response ends and a worker (`startWorker`) runs it;
 * a send that fails, because PostgreSQL cannot be reached or because the send outlives
 * `sendTimeoutMs`, is logged and the task runs in this process instead.
 */
import express from 'express';
import request from 'supertest';
import { LOG_MESSAGES, defineTask } from '../lib';
import { inTime } from '../lib/in-time';
import { makeApp } from './support/apps';
import { useOrdersDatabase } from './support/pgboss-database';
import { describePgBoss } from './support/pgboss-node';
import { sendReceipt } from './support/pgboss-tasks';
import { freePort } from './support/ports';
import { pollUntil } from './support/redis';

describePgBoss('add(definedTask) on pg-boss', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
  const pgBoss = require('../lib/pg-boss') as typeof import('../lib/pg-boss');
  const { pgBossDurable } = pgBoss;
  const db = useOrdersDatabase();

  /** An app whose `POST /signup` adds the receipt of `orderId` with add(), then answers 202. */
  function signupApp(durable: import('../lib').DurableQueue, orderId: number) {
    return makeApp(
      express,
      (app) =>
        app.post('/signup', (_req, res) => {
          res.locals.backgroundTasks.add(sendReceipt, { orderId });
          res.status(202).end();
        }),
      { tasks: { durable } },
    );
  }

  test('the task becomes a job when the response ends, with its payload, request and policy, and a worker runs it', async () => {
    const setup = db.setUp();
    const worker = await setup.worker();
    let jobsAtAdd: string[] | undefined;
    const { app, bg } = makeApp(
      express,
      (app) =>
        app.post('/signup', async (_req, res) => {
          res.locals.backgroundTasks.add(sendReceipt, { orderId: 101 });
          // Nothing is sent before the response ends.
          jobsAtAdd = (await worker.boss.findJobs(setup.queueName)).map((job) => job.id);
          res.status(202).end();
        }),
      { tasks: { durable: setup.durable } },
    );
    await request(app).post('/signup').set('X-Request-Id', 'handoff-1').expect(202);
    await bg.idle();
    expect(jobsAtAdd).toEqual([]);
    expect(bg.stats()).toMatchObject({ enqueued: 1, succeeded: 0, pending: 0, running: 0 });
    const [job] = await worker.boss.findJobs(setup.queueName);
    expect(job).toMatchObject({
      data: {
        task: 'send-receipt',
        payload: { orderId: 101 },
        request: { id: 'handoff-1', method: 'POST', url: '/signup', statusCode: 202 },
      },
      // sendReceipt: retries 1, retryDelayMs 10, timeoutMs 1000.
      retryLimit: 1,
      retryDelay: 1,
      retryBackoff: true,
      expireInSeconds: 6,
    });
    await pollUntil(() => worker.stats().succeeded === 1, 'the worker to run it');
    expect(await db.receiptsOf(101)).toEqual([{ pid: process.pid, attempt: 1 }]);
    await setup.untilJobStates(['completed']);
  });

  test('a task whose timeout is over a minute gets a heartbeat; every job names the dead-letter queue', async () => {
    const setup = db.setUp();
    const slow = defineTask('slow-report', (_payload: null) => undefined, { timeoutMs: 120_000 });
    const { app, bg } = makeApp(
      express,
      (app) =>
        app.post('/', (_req, res) => {
          res.locals.backgroundTasks.add(slow, null).add(sendReceipt, { orderId: 105 });
          res.end();
        }),
      { tasks: { durable: setup.durable } },
    );
    await request(app).post('/').expect(200);
    await bg.idle();
    const jobs = await (await setup.worker()).boss.findJobs<{ task: string }>(setup.queueName);
    const byTask = Object.fromEntries(jobs.map((job) => [job.data.task, job]));
    const deadLetter = `${setup.queueName}.dead-letter`;
    expect(byTask['slow-report']).toMatchObject({
      expireInSeconds: 125,
      heartbeatSeconds: 30,
      deadLetter,
    });
    expect(byTask['send-receipt']).toMatchObject({
      expireInSeconds: 6,
      heartbeatSeconds: null,
      deadLetter,
    });
  });

  test("a job whose task the worker does not run fails there, logged with the tasks it does run; pg-boss's retry can take it to one that does", async () => {
    const other = defineTask('other', (_payload: null) => undefined);
    const setup = db.setUp();
    const wrong = await pgBoss.startWorker({
      connectionString: db.server.url,
      queueName: setup.queueName,
      tasks: [other],
      logger: setup.log.logger,
      workOptions: { pollingIntervalSeconds: 0.5 },
    });
    const { app, bg } = signupApp(setup.durable, 106);
    await request(app).post('/signup').expect(202);
    await bg.idle();
    const [line] = await pollUntil(() => {
      const lines = setup.log.find(LOG_MESSAGES.taskRetrying);
      return lines.length > 0 && lines;
    }, 'the failed attempt');
    await wrong.close();
    expect(line).toMatchObject({
      task: 'send-receipt',
      attempt: 1,
      jobId: expect.any(String),
      error: expect.objectContaining({
        message: 'no task named "send-receipt" is defined in this worker (it runs: other)',
      }),
    });
    expect(wrong.stats()).toMatchObject({ succeeded: 0, failed: 0, running: 0 });
    // sendReceipt has retries: 1: its retry goes to the next worker, which runs it.
    const right = await setup.worker();
    await pollUntil(() => right.stats().succeeded === 1, 'a worker that runs it', 15_000);
    expect(await db.receiptsOf(106)).toEqual([{ pid: process.pid, attempt: 2 }]);
  }, 30_000);

  test.each([
    ['a string', 'not a job', 'its data is not an object (got string)'],
    ['an array', [1, 2], 'its data is not an object (got an array)'],
    ['no request', { task: 'send-receipt', payload: { orderId: 107 } }, 'its data has no request'],
    [
      'a request without a method',
      { task: 'send-receipt', payload: { orderId: 107 }, request: { id: 'r', url: '/' } },
      "its data's request.method is not a string",
    ],
  ])(
    'a job whose data pgBossDurable() did not write (%s) is never run: it fails with its id and the reason, then goes to the dead-letter queue',
    async (_what, data, reason) => {
      const setup = db.setUp();
      const worker = await setup.worker();
      const id = await worker.boss.send(setup.queueName, data as object, {
        retryLimit: 0,
        deadLetter: `${setup.queueName}.dead-letter`,
      });
      await pollUntil(() => worker.stats().failed === 1, 'the job to fail');
      expect(setup.log.find(LOG_MESSAGES.taskFailed)).toEqual([
        expect.objectContaining({
          jobId: id,
          error: expect.objectContaining({ message: `job ${id} cannot be run: ${reason}` }),
        }),
      ]);
      expect(worker.stats()).toMatchObject({ succeeded: 0, failed: 1, running: 0 });
      expect(await db.receiptsOf(107)).toEqual([]);
      await setup.untilJobStates(['failed']);
      expect(await worker.boss.findJobs(`${setup.queueName}.dead-letter`)).toEqual([
        expect.objectContaining({ data }),
      ]);
    },
  );

  test("pg-boss's errors (its connections ended by the server) are logged once a minute per kind, and the repeats when the worker closes", async () => {
    const setup = db.setUp();
    const { startWorker } = pgBoss;
    const worker = await startWorker({
      connectionString: db.server.url,
      queueName: setup.queueName,
      tasks: [sendReceipt],
      logger: setup.log.logger,
      bossOptions: { application_name: 'ebt-error-test' },
    });
    let errors = 0;
    worker.boss.on('error', () => errors++);
    const end = () =>
      db.pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ebt-error-test'",
      );
    await end();
    await pollUntil(() => errors > 0, "pg-boss's first error");
    // Its pool makes new connections on demand: end them again, twice.
    for (let i = 0; i < 2; i++) {
      await worker.boss.findJobs(setup.queueName).catch(() => undefined);
      await end();
    }
    await pollUntil(() => errors >= 2, 'more errors');
    const lines = () => setup.log.find(LOG_MESSAGES.workerError);
    expect(lines()).toEqual([
      expect.objectContaining({
        level: 'error',
        queue: setup.queueName,
        side: 'worker',
        // pg-boss emits a copy of pg's DatabaseError: logged as that error, not as a thrown non-Error.
        error: expect.objectContaining({
          name: 'error',
          message: expect.stringMatching(/^terminating connection due to administrator command/),
        }),
      }),
    ]);
    // Within a minute, each line is the first error of its kind, or (at close()) the repeats
    // still untold of one kind: a line stands for its repeats, or else for one error. close()
    // stops pg-boss before it tells the repeats, so those its stop emits are told too.
    const before = lines().length;
    await worker.close();
    const told = lines().slice(before);
    expect(told).toContainEqual(expect.objectContaining({ repeats: expect.any(Number) }));
    expect(lines().reduce((sum, line) => sum + (Number(line.repeats) || 1), 0)).toBe(errors);
  });

  test('PostgreSQL cannot be reached: the failed send is logged, and the task runs in this process', async () => {
    const closed = await freePort();
    const durable = pgBossDurable({
      connectionString: `postgres://postgres@127.0.0.1:${closed}/postgres`,
      queueName: 'unreachable',
    });
    const { app, bg, log } = signupApp(durable, 102);
    try {
      await request(app).post('/signup').expect(202);
      await bg.idle();
      expect(bg.stats()).toMatchObject({ succeeded: 1, enqueued: 0, failed: 0, pending: 0 });
      expect(log.find(LOG_MESSAGES.enqueueFailed)).toEqual([
        expect.objectContaining({
          level: 'error',
          task: 'send-receipt',
          error: expect.objectContaining({ message: expect.stringMatching(/ECONNREFUSED/) }),
        }),
      ]);
      expect(await db.receiptsOf(102)).toEqual([{ pid: process.pid, attempt: 1 }]);
    } finally {
      await durable.close();
    }
  });

  test('a send that outlives sendTimeoutMs (its insert waits on a lock): logged, run here, and run again by a worker once the send lands', async () => {
    const setup = db.setUp({ durable: { sendTimeoutMs: 300 } });
    const worker = await setup.worker();
    await setup.durable.start();
    const { app, bg, log } = signupApp(setup.durable, 103);
    // Every insert into pg-boss's jobs waits until this transaction ends.
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE pgboss.job IN ACCESS EXCLUSIVE MODE');
      await request(app).post('/signup').expect(202);
      // Bounded, so that a send that is never given up fails this test rather than holding the lock.
      expect(await inTime(bg.idle(), 10_000)).toBe(true);
      expect(bg.stats()).toMatchObject({ succeeded: 1, enqueued: 0, pending: 0 });
      expect(log.find(LOG_MESSAGES.enqueueFailed)).toEqual([
        expect.objectContaining({
          task: 'send-receipt',
          error: expect.objectContaining({ message: 'pg-boss send timed out after 300 ms' }),
        }),
      ]);
      expect(await db.receiptsOf(103)).toEqual([{ pid: process.pid, attempt: 1 }]);
    } finally {
      await locker.query('COMMIT');
      locker.release();
    }
    // The send was not cancelled: its job lands, and a worker runs the task a second time.
    await pollUntil(() => worker.stats().succeeded === 1, 'the worker to run it again');
    expect(await db.receiptsOf(103)).toHaveLength(2);
  });

  describe('options, checked at the call with a TypeError that names the option', () => {
    const url = 'postgres://postgres@127.0.0.1:1/postgres';
    test.each<[string, object, RegExp]>([
      [
        'neither connectionString nor boss',
        {},
        /give exactly one of the options "connectionString" and "boss"/,
      ],
      ['both', { connectionString: url, boss: {} }, /give exactly one/],
      // The URL is not shown: it may hold a password.
      [
        'a URL of another database',
        { connectionString: 'mysql://ann:s3cret@db/shop' },
        /^pgBossDurable\(\): option "connectionString" must be a postgres:\/\/ or postgresql:\/\/ URL$/,
      ],
      [
        'a boss that is no PgBoss',
        { boss: { start() {} } },
        /option "boss" must be a PgBoss instance/,
      ],
      [
        'a queue name pg-boss refuses',
        { connectionString: url, queueName: 'two words' },
        /option "queueName" must be a queue name of letters/,
      ],
      [
        'the dead-letter queue the queue itself',
        { connectionString: url, queueName: 'q', deadLetterQueue: 'q' },
        /option "deadLetterQueue" must be another queue than queueName/,
      ],
      [
        'a sendTimeoutMs of 0',
        { connectionString: url, sendTimeoutMs: 0 },
        /option "sendTimeoutMs" must be an integer from 1 to/,
      ],
      [
        'a negative leaseMarginMs',
        { connectionString: url, leaseMarginMs: -1 },
        /option "leaseMarginMs" must be an integer from 0 to/,
      ],
      [
        'an unknown option',
        { connectionString: url, retries: 3 },
        /unknown option "retries"; known options: connectionString, boss/,
      ],
    ])('pgBossDurable(): %s', (_name, options, message) => {
      expect(() => pgBossDurable(options as never)).toThrow(message);
      expect(() => pgBossDurable(options as never)).toThrow(TypeError);
    });

    test.each<[string, object, RegExp]>([
      [
        'no tasks',
        { tasks: [] },
        /option "tasks" must be a non-empty array of defineTask\(\) tasks/,
      ],
      [
        'two tasks of one name',
        { tasks: [sendReceipt, sendReceipt] },
        /two tasks are named "send-receipt"/,
      ],
      [
        'a concurrency of 0',
        { tasks: [sendReceipt], concurrency: 0 },
        /option "concurrency" must be an integer from 1 to 10000/,
      ],
      [
        'a work option it sets itself',
        { tasks: [sendReceipt], workOptions: { batchSize: 10 } },
        /workOptions\.batchSize is set by startWorker\(\)/,
      ],
      [
        'ignoreStartAfter, which would take jobs under their lease',
        { tasks: [sendReceipt], workOptions: { ignoreStartAfter: true } },
        /workOptions\.ignoreStartAfter would take jobs that a web process is running/,
      ],
      [
        'bossOptions that are no object',
        { tasks: [sendReceipt], bossOptions: 'max=2' },
        /option "bossOptions" must be an object/,
      ],
    ])('startWorker(): %s', async (_name, options, message) => {
      await expect(
        pgBoss.startWorker({ connectionString: url, ...options } as never),
      ).rejects.toThrow(message);
    });

    test('startWorker(): bossOptions beside a boss of your own', async () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
      const { PgBoss } = require('pg-boss') as typeof import('pg-boss');
      const boss = new PgBoss({ connectionString: url });
      await expect(
        pgBoss.startWorker({ boss, tasks: [sendReceipt], bossOptions: { max: 2 } }),
      ).rejects.toThrow(/option "bossOptions" is for the instance made from "connectionString"/);
    });
  });
});
