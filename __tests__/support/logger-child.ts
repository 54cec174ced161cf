/**
 * The child process of logging.test.ts, for what only a real process shows: the records that
 * reach its stderr, and its heap. One scenario per run, named by `SCENARIO`; each prints what it
 * saw as one JSON line on stdout.
 * - `stuck`: 2,000 then 20 x 1,000 failing tasks logged through a transport that never
 *   acknowledges a record.
 * - `closed`: a failing task after `closeLogger()`.
 * - `throwing`: a 500 and a failing task, logged through a transport that throws.
 * - `failing-later`: a transport that fails asynchronously, then a second failing task.
 * - `slow-stdout`: `closeLogger()` of a Console logger while stdout, a pipe its reader has
 *   stopped reading, holds a few lines: says `waiting` on stderr, then how it ended.
 * - `default-stalled`: the default logger (JSON on stdout) while stdout is a pipe nobody reads:
 *   21,000 failures; says its heap growth and stats on stderr, then `{"resume":true}` (the
 *   parent reads stdout from then on), then how `closeLogger(bg.logger)` ended.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import createError from 'http-errors';
import winston from 'winston';
import Transport from 'winston-transport';
import { backgroundTasks, closeLogger, httpErrorHandler } from '../../lib';

const say = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);

/** A transport whose `log()` never calls back: a network transport stuck on a dead peer. */
class Stuck extends Transport {
  override log(): void {}
}

class Throwing extends Transport {
  override log(): void {
    throw new Error('transport is broken');
  }
}

/** Takes each record, then fails a tick later, as a transport whose disk is full would. */
class FailingLater extends Transport {
  readonly delivered: string[] = [];
  override log(info: { message: string }, callback: (error?: Error) => void): void {
    this.delivered.push(info.message);
    setImmediate(() => callback(new Error('disk full')));
  }
}

/**
 * Fills the stdout pipe until Node holds some of it back, logs one line through a Console
 * transport, and closes the logger: it must resolve true once the reader reads again, though no
 * write was refused (so no 'drain' will come).
 */
async function slowStdout(): Promise<void> {
  const logger = winston.createLogger({
    format: winston.format.json(),
    transports: [new winston.transports.Console()],
  });
  while (process.stdout.writableLength === 0) process.stdout.write(`${'.'.repeat(1023)}\n`);
  logger.info('the last line');
  const closing = closeLogger(logger, { timeoutMs: 3_000 });
  process.stderr.write(`${JSON.stringify({ waiting: process.stdout.writableLength })}\n`);
  const closed = await closing;
  process.stderr.write(`${JSON.stringify({ closed })}\n`);
}

/** The default logger behind a stdout pipe that nobody reads. */
async function defaultStalled(): Promise<void> {
  const bg = backgroundTasks({ maxPending: Infinity });
  const app = express();
  app.use(bg);
  app.post('/', (_req, res) => {
    for (let i = 0; i < 1_000; i++)
      res.locals.backgroundTasks.add(function failingTask() {
        throw new Error(`failure ${i} ${'x'.repeat(200)}`);
      });
    res.end();
  });
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const fail = async () => {
    await fetch(`http://127.0.0.1:${port}/`, { method: 'POST' });
    await bg.idle();
  };
  const tell = (event: object) => process.stderr.write(`${JSON.stringify(event)}\n`);
  await fail(); // warm-up
  const before = heapAfterGc();
  for (let i = 0; i < 20; i++) await fail();
  await new Promise((resolve) => setTimeout(resolve, 1_500)); // the stall is seen, its records go
  tell({
    heapGrowth: heapAfterGc() - before,
    stats: bg.stats(),
    stdoutHolds: process.stdout.writableLength,
  });
  tell({ resume: true });
  tell({ closed: await closeLogger(bg.logger, { timeoutMs: 10_000 }) });
  server.close();
}

async function main(scenario: string): Promise<void> {
  if (scenario === 'slow-stdout') return slowStdout();
  if (scenario === 'default-stalled') return defaultStalled();
  const transport = {
    stuck: () => new Stuck(),
    closed: () => new winston.transports.Console(),
    throwing: () => new Throwing(),
    'failing-later': () => new FailingLater(),
  }[scenario]!();
  const logger = winston.createLogger({ format: winston.format.json(), transports: [transport] });
  const bg = backgroundTasks({ logger, maxPending: Infinity });
  const app = express();
  app.use(bg);
  app.post('/fail/:count', (req, res) => {
    for (let i = 0; i < Number(req.params.count); i++)
      res.locals.backgroundTasks.add(function failingTask() {
        throw new Error(`failure ${i} ${'x'.repeat(200)}`);
      });
    if (req.query.status === '500') throw createError(500, 'SECRET internal detail');
    res.end();
  });
  app.use(httpErrorHandler({ backgroundTasks: bg }));
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const fail = async (count: number, query = '') => {
    const res = await fetch(`http://127.0.0.1:${port}/fail/${count}${query}`, { method: 'POST' });
    const body = await res.text();
    await bg.idle();
    return { status: res.status, body };
  };
  if (scenario === 'stuck') {
    await fail(2_000); // fills the stuck logger up to its limit, and warms up
    const before = heapAfterGc();
    // 20 requests of 1,000: each request's failures are one synchronous stretch, which stderr's
    // bounded buffer takes whole while its reader keeps up.
    for (let i = 0; i < 20; i++) await fail(1_000);
    say({ heapGrowth: heapAfterGc() - before, stats: bg.stats() });
  } else if (scenario === 'closed') {
    await closeLogger(logger);
    await fail(1);
    say({ stats: bg.stats() });
  } else if (scenario === 'throwing') {
    say({ response: await fail(1, '?status=500'), stats: bg.stats() });
  } else {
    await fail(1);
    await new Promise((resolve) => setImmediate(resolve)); // the transport fails a tick later
    await fail(1);
    say({ delivered: (transport as FailingLater).delivered, stats: bg.stats() });
  }
  server.close();
}

function heapAfterGc(): number {
  global.gc!();
  global.gc!();
  return process.memoryUsage().heapUsed;
}

void main(process.env.SCENARIO!);
