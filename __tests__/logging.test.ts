/**
 * Where log records go when the logger cannot take them, and how a process gets every line out
 * before it exits: a record a transport throws on or fails goes to stderr; a logger that stops
 * acknowledging holds at most LOGGER_ROOM of the library's records, and after STALL_MS the rest
 * reach stderr; `closeLogger()` resolves once a File transport has written everything; a record
 * after that reaches stderr; error messages and stacks are cut to a bound. What reaches stderr
 * is read from a real child process's stderr. (log-delivery.test.ts covers the faults in depth.)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import winston from 'winston';
import Transport from 'winston-transport';
import { LOG_MESSAGES, closeLogger } from '../lib';
import { LOGGER_ROOM } from '../lib/logger-guard';
import { MAX_LOGGED_CHARS } from '../lib/thrown';
import { EXPRESS_VERSIONS, makeApp } from './support/apps';
import { jsonLines, runChild } from './support/run-child';

const dir = mkdtempSync(path.join(tmpdir(), 'ebt-logging-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface ChildRun {
  /** JSON lines the child printed on stdout. */
  events: Array<Record<string, unknown>>;
  /** JSON lines the child printed on stderr. */
  stderr: Array<Record<string, unknown>>;
}

async function runLoggerChild(scenario: string): Promise<ChildRun> {
  const { stdout, stderr, code } = await runChild('logger-child.ts', { SCENARIO: scenario }, [
    '--expose-gc',
  ]);
  if (code !== 0) throw new Error(`child exited ${code}:\n${stdout}\n${stderr}`);
  return { events: jsonLines(stdout), stderr: jsonLines(stderr) };
}

describe('a logger whose transport never acknowledges a record', () => {
  let run: ChildRun;
  beforeAll(async () => {
    run = await runLoggerChild('stuck');
  }, 60_000);

  test(`holds at most ${LOGGER_ROOM} of the library's records: of 22,000 failures every other one reaches stderr, or is counted as dropped`, () => {
    const failures = run.stderr.filter((r) => r.message === LOG_MESSAGES.taskFailed);
    const { stats } = run.events[0] as { stats: { logRecordsDropped: number } };
    // The warm-up fills the logger first; past that, every record goes to stderr, whose buffer is
    // bounded: a reader slower than 20,000 failures in a few turns makes it drop (and count) some.
    // Besides the logger's room, the transport holds its own buffer (16) and the record it was given.
    const held = 22_000 - failures.length - stats.logRecordsDropped;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(LOGGER_ROOM + 17);
    expect(failures[0]).toMatchObject({
      level: 'error',
      task: 'failingTask',
      error: { name: 'Error' },
    });
    expect(run.events[0].stats).toMatchObject({ failed: 22_000, pending: 0, running: 0 });
  });

  test('says once on stderr that the logger took no record for a second', () => {
    expect(run.stderr.filter((r) => r.message === LOG_MESSAGES.loggerStalled)).toEqual([
      expect.objectContaining({ level: 'error', waiting: expect.any(Number) }),
    ]);
  });

  test('memory stays bounded: heap growth under 10 MB over the 20,000 failures', () => {
    expect(run.events[0].heapGrowth).toBeLessThan(10 * 1024 * 1024);
  });
});

test('a failure logged after closeLogger() reaches stderr, not the void', async () => {
  const run = await runLoggerChild('closed');
  expect(run.events[0].stats).toMatchObject({ failed: 1 });
  expect(run.stderr).toEqual([
    expect.objectContaining({
      level: 'error',
      message: LOG_MESSAGES.taskFailed,
      task: 'failingTask',
    }),
  ]);
}, 30_000);

test('a winston transport that throws on every record: the response is sent, and each record goes to stderr, after one line that says so', async () => {
  const run = await runLoggerChild('throwing');
  expect(run.events[0]).toMatchObject({
    response: { status: 500, body: 'Internal Server Error' },
    stats: { failed: 1 },
  });
  expect(run.stderr).toEqual([
    expect.objectContaining({
      message: LOG_MESSAGES.loggerFailed,
      forGood: false,
      loggerError: expect.objectContaining({ message: 'transport is broken' }),
    }),
    expect.objectContaining({ message: LOG_MESSAGES.requestFailed, status: 500 }),
    expect.objectContaining({ message: LOG_MESSAGES.taskFailed, task: 'failingTask' }),
  ]);
}, 30_000);

test('a winston transport that calls back with an error a tick later: no crash, and each record it failed goes to stderr', async () => {
  const run = await runLoggerChild('failing-later');
  expect(run.events[0]).toMatchObject({
    delivered: [LOG_MESSAGES.taskFailed, LOG_MESSAGES.taskFailed],
    stats: { failed: 2 },
  });
  expect(run.stderr.map((record) => record.message)).toEqual([
    LOG_MESSAGES.loggerFailed,
    LOG_MESSAGES.taskFailed,
    LOG_MESSAGES.taskFailed,
  ]);
}, 30_000);

test('the default logger behind a stdout pipe nobody reads holds no line in memory: 21,000 failures, each on stdout or stderr once it is read, and closeLogger(bg.logger) true', async () => {
  // Today winston's Console transport hands every line to Node, which holds them all: 68 MB.
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      '-r',
      'ts-node/register/transpile-only',
      path.join(__dirname, 'support/logger-child.ts'),
    ],
    { cwd: path.join(__dirname, '..'), env: { ...process.env, SCENARIO: 'default-stalled' } },
  );
  // Not read until the child says so ('readable', not 'data': Node would resume an unread stdio pipe at exit).
  let reading = false;
  const stdoutChunks: Buffer[] = [];
  const readAll = () => {
    for (
      let chunk = child.stdout.read() as Buffer | null;
      chunk !== null;
      chunk = child.stdout.read() as Buffer | null
    )
      stdoutChunks.push(chunk);
  };
  child.stdout.on('readable', () => reading && readAll());
  const events: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    for (let end = stderr.indexOf('\n'); end >= 0; end = stderr.indexOf('\n')) {
      const event = JSON.parse(stderr.slice(0, end)) as Record<string, unknown>;
      stderr = stderr.slice(end + 1);
      events.push(event);
      if (event.resume === true) {
        reading = true;
        readAll();
      }
    }
  });
  const code = await new Promise((resolve) => child.on('close', resolve));
  expect(code).toBe(0);
  const result = events.find((event) => 'heapGrowth' in event) as {
    heapGrowth: number;
    stats: { failed: number; logRecordsDropped: number };
    stdoutHolds: number;
  };
  expect(result.heapGrowth).toBeLessThan(8 * 1024 * 1024);
  expect(result.stdoutHolds).toBeLessThan(64 * 1024);
  expect(result.stats.failed).toBe(21_000);
  const onStdout = Buffer.concat(stdoutChunks)
    .toString()
    .split('\n')
    .filter((line) => line.includes(LOG_MESSAGES.taskFailed)).length;
  const onStderr = events.filter((event) => event.message === LOG_MESSAGES.taskFailed).length;
  expect(onStdout + onStderr + result.stats.logRecordsDropped).toBe(21_000);
  expect(events.filter((event) => event.message === LOG_MESSAGES.loggerStalled)).toHaveLength(1);
  expect(events.at(-1)).toEqual({ closed: true });
}, 60_000);

describe('closeLogger()', () => {
  test('resolves true once a File transport has written every record', async () => {
    const file = path.join(dir, 'close.log');
    const logger = winston.createLogger({
      format: winston.format.json(),
      transports: [new winston.transports.File({ filename: file })],
    });
    for (let i = 0; i < 5_000; i++) logger.info('record', { i, padding: 'p'.repeat(100) });
    await expect(closeLogger(logger)).resolves.toBe(true);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(5_000);
    expect(JSON.parse(lines[4_999])).toMatchObject({ message: 'record', i: 4_999 });
  });

  test("resolves true once a Console transport's lines have left a stdout pipe its reader had stopped reading", async () => {
    const child = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'support/logger-child.ts')],
      { cwd: path.join(__dirname, '..'), env: { ...process.env, SCENARIO: 'slow-stdout' } },
    );
    child.stdout.pause(); // the reader stops: the pipe fills, and Node holds the rest
    // Reads again (resume(): a stream paused by hand does not flow by a 'data' listener alone).
    let stdout = '';
    const stderr: Array<Record<string, unknown>> = [];
    child.stderr.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        const event = JSON.parse(line) as Record<string, unknown>;
        stderr.push(event);
        if ('waiting' in event)
          child.stdout.on('data', (data: Buffer) => (stdout += data)).resume();
      }
    });
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(stderr[0].waiting).toBeGreaterThan(0);
    expect(stderr[1]).toEqual({ closed: true });
    expect(stdout.trim().split('\n').pop()).toBe('{"level":"info","message":"the last line"}');
  }, 30_000);

  test('resolves false after timeoutMs when a transport never finishes', async () => {
    class Stuck extends Transport {
      override log(): void {}
    }
    const logger = winston.createLogger({ transports: [new Stuck()] });
    logger.info('never written');
    await expect(closeLogger(logger, { timeoutMs: 50 })).resolves.toBe(false);
  });

  test('checks its arguments', () => {
    expect(() => closeLogger({} as winston.Logger)).toThrow(
      /closeLogger\(\): option "logger" must be a winston Logger/,
    );
    const logger = winston.createLogger({ transports: [] });
    expect(() => closeLogger(logger, { timeoutMs: -1 })).toThrow(
      /closeLogger\(\): option "timeoutMs" must be an integer from 0/,
    );
    expect(() => closeLogger(logger, { wait: 1 } as never)).toThrow(/unknown option "wait"/);
  });
});

describe.each(EXPRESS_VERSIONS)('%s: error messages and stacks are cut', (_name, createExpress) => {
  test(`a 10 MB message is logged as at most ${MAX_LOGGED_CHARS} characters and a marker, in the task's line and the request's`, async () => {
    const huge = 'm'.repeat(10 * 1024 * 1024);
    const { app, bg, log } = makeApp(createExpress, (app) => {
      app.get('/task', (_req, res) => {
        res.locals.backgroundTasks.add(function hugeFailure() {
          throw new Error(huge);
        });
        res.end();
      });
      app.get('/route', () => {
        throw new Error(huge);
      });
    });
    await request(app).get('/task').expect(200);
    await request(app).get('/route').expect(500);
    await bg.idle();
    const records = [...log.find(LOG_MESSAGES.taskFailed), ...log.find(LOG_MESSAGES.requestFailed)];
    expect(records).toHaveLength(2);
    for (const record of records) {
      const error = record.error as { message: string; stack: string };
      const marker = `… [cut: ${huge.length} characters in all]`;
      expect(error.message).toBe(`${huge.slice(0, MAX_LOGGED_CHARS)}${marker}`);
      expect(error.stack.startsWith(`Error: ${'m'.repeat(100)}`)).toBe(true);
      expect(error.stack.endsWith(`characters in all]`)).toBe(true);
      expect(record.line.length).toBeLessThan(3 * MAX_LOGGED_CHARS);
    }
  });
});
