/**
 * The child process of the log-delivery tests: a real winston logger with one kind of transport
 * (or two), records logged through the library in a burst of a given shape, then
 * `closeLogger()`; what each in-memory transport received, the middleware's `stats()`, the
 * fallback's longest write per turn, the event loop's longest stall and how `closeLogger()`
 * ended are written as JSON to `RESULT_FILE`. The parent reads the rest from where it really
 * went: the File transport's file, the stdout pipe (Console), the stderr pipe.
 *
 * `CASE` (JSON, see `Case`) says what to do. Every record carries `task: "r<n>"` (kept even by a
 * minimal record), so that the parent can count each one wherever it arrived.
 */
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import express from 'express';
import winston from 'winston';
import Transport from 'winston-transport';
import {
  backgroundTasks,
  closeLogger,
  httpErrorHandler,
  type BackgroundTasksMiddleware,
} from '../../lib';
import { droppedRecords, recordsInDoubt, safeLog } from '../../lib/logging';
import { stderrBacklog } from '../../lib/stderr';

export type TransportKind =
  /** winston's File transport, to `FILE`. */
  | 'file'
  /** winston's Console transport: stdout, a pipe the parent may read slowly. */
  | 'console'
  /** Keeps what it takes, calling back a turn later. */
  | 'late'
  /** Keeps what it takes, acknowledging one record every 5 ms. */
  | 'slow'
  /** Never calls back. */
  | 'stuck'
  /** Throws from `log()` on every `every`-th record, calling back a turn later otherwise. */
  | 'throws'
  /** Calls back with an error on every `every`-th record. */
  | 'callback-error'
  /** Emits `'error'` at its `at`-th record. */
  | 'emits-error'
  /** Destroys itself with an error at its `at`-th record. */
  | 'destroys'
  /** Its own format throws on every `every`-th record. */
  | 'format-throws';

export interface Case {
  transports: TransportKind[];
  /** Records in the burst. */
  records: number;
  /** Bytes of padding in each. */
  size: number;
  /** How the records are logged: all at once, a microtask apart, or an immediate apart. */
  pacing: 'sync' | 'microtask' | 'immediate';
  /** Through `safeLog` (the library's one way to log), or as failing tasks of one request. */
  through: 'safeLog' | 'tasks';
  every?: number;
  at?: number;
  /** The logger's format: plain JSON, one that redacts `token=` in `url` (with a `service` default field), or one that throws on records with `throwIf`. */
  format?: 'json' | 'redacting' | 'throwing';
  /** Waits this long first (a File transport opens its file). */
  warmUpMs?: number;
  closeTimeoutMs?: number;
  /** Instead of closing: drain({ timeoutMs }) with the tasks still running, then close. */
  drainTimeoutMs?: number;
  /** The logger is never given to the library: only closeLogger() sees it. */
  unguarded?: boolean;
  /** After the burst, says `{"burst":"done"}` on stdout and waits for stderr to take what waits. */
  signalBurstDone?: boolean;
}

export interface Result {
  delivered: Record<string, string[]>;
  stats: ReturnType<BackgroundTasksMiddleware['stats']>;
  /** Records a Console transport had handed to a stdout that had not written them when the close timed out. */
  inDoubt: number;
  closed: boolean;
  closeMs: number;
  drain?: { completed: boolean; abandoned: number; ms: number };
  maxLoopDelayMs: number;
  maxStderrTurnMs: number;
  /** With `signalBurstDone`: drops no line had told once stderr had taken what waited. */
  unreportedOnceRead?: number;
}

const spec = JSON.parse(process.env.CASE!) as Case;

/** A transport that keeps each record's id, for the parent to count; `behave` decides how it acknowledges. */
class Keeping extends Transport {
  readonly ids: string[] = [];
  private count = 0;
  constructor(
    readonly kind: TransportKind,
    private readonly behave: (n: number, callback: (error?: Error) => void, self: Keeping) => void,
    options?: Transport.TransportStreamOptions,
  ) {
    super(options);
  }
  /** Counts a record as delivered once it is acknowledged without an error. */
  override log(info: Record<string | symbol, unknown>, callback: (error?: Error) => void): void {
    const n = ++this.count;
    this.behave(
      n,
      (error) => {
        if (error === undefined && typeof info.task === 'string') this.ids.push(info.task);
        callback(error);
      },
      this,
    );
  }
}

function makeTransport(kind: TransportKind): Transport {
  const every = spec.every ?? 3;
  const at = spec.at ?? 20;
  const later = (callback: (error?: Error) => void) => setImmediate(() => callback());
  switch (kind) {
    case 'file':
      return new winston.transports.File({ filename: process.env.FILE! });
    case 'console':
      return new winston.transports.Console();
    case 'late':
      return new Keeping(kind, (_n, callback) => later(callback));
    case 'slow': {
      // One record every 5 ms, batch or not: a transport writing to a slow peer.
      let nextAt = 0;
      return new Keeping(kind, (_n, callback) => {
        nextAt = Math.max(performance.now(), nextAt) + 5;
        setTimeout(callback, nextAt - performance.now());
      });
    }
    case 'stuck':
      return new Keeping(kind, () => undefined);
    case 'throws':
      return new Keeping(kind, (n, callback) => {
        if (n % every === 0) throw new Error(`transport threw on record ${n}`);
        later(callback);
      });
    case 'callback-error':
      return new Keeping(kind, (n, callback) =>
        setImmediate(() => callback(n % every === 0 ? new Error('disk full') : undefined)),
      );
    case 'emits-error':
      return new Keeping(kind, (n, callback, self) => {
        if (n === at) setImmediate(() => self.emit('error', new Error('connection lost')));
        later(callback);
      });
    case 'destroys':
      return new Keeping(kind, (n, callback, self) => {
        if (n === at) setImmediate(() => self.destroy(new Error('connection lost')));
        else later(callback);
      });
    case 'format-throws': {
      let seen = 0;
      const format = winston.format((info) => {
        if (++seen % every === 0) throw new Error(`format threw on ${String(info.url)}`);
        return info;
      })();
      return new Keeping(kind, (_n, callback) => later(callback), { format });
    }
  }
}

function loggerFormat(): winston.Logform.Format {
  const json = winston.format.json();
  if (spec.format === 'redacting') {
    const redact = winston.format((info) => {
      if (typeof info.url === 'string')
        info.url = info.url.replace(/token=[^&]*/g, 'token=[redacted]');
      return info;
    })();
    return winston.format.combine(redact, winston.format.timestamp(), json);
  }
  if (spec.format === 'throwing') {
    const throwing = winston.format((info) => {
      if (typeof info.url === 'string' && info.url.includes('throw'))
        throw new Error(`cannot format ${info.url}`);
      return info;
    })();
    return winston.format.combine(throwing, json);
  }
  return json;
}

async function main(): Promise<void> {
  const transports = spec.transports.map(makeTransport);
  const logger = winston.createLogger({
    format: loggerFormat(),
    ...(spec.format === 'redacting' && { defaultMeta: { service: 'shop' } }),
    transports,
  });
  const bg = backgroundTasks({
    ...(!spec.unguarded && { logger }),
    maxPending: Infinity,
    timeoutMs: 0,
    concurrency: Infinity,
  });
  const delay = monitorEventLoopDelay({ resolution: 5 });
  if (spec.warmUpMs) await new Promise((resolve) => setTimeout(resolve, spec.warmUpMs));
  delay.enable();
  const padding = 'p'.repeat(spec.size);
  let drain: Result['drain'];
  let unreportedOnceRead: number | undefined;
  if (spec.through === 'safeLog') {
    for (let i = 0; i < spec.records; i++) {
      safeLog(logger, 'error', 'probe', { task: `r${i}`, url: `/pay?token=SECRET-${i}`, padding });
      if (spec.pacing === 'microtask') await Promise.resolve();
      else if (spec.pacing === 'immediate') await new Promise((resolve) => setImmediate(resolve));
    }
  } else {
    drain = await failTasks(bg, padding);
  }
  if (spec.signalBurstDone) {
    process.stdout.write(`${JSON.stringify({ burst: 'done' })}\n`);
    while (stderrBacklog().lines > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    unreportedOnceRead = stderrBacklog().unreported;
  }
  // closeLogger() may block at exit (within its timeout): the stall bound is for the time before.
  delay.disable();
  const started = performance.now();
  const closed = await closeLogger(logger, { timeoutMs: spec.closeTimeoutMs ?? 5_000 });
  const closeMs = performance.now() - started;
  const result: Result = {
    delivered: Object.fromEntries(
      transports.filter((t): t is Keeping => t instanceof Keeping).map((t) => [t.kind, t.ids]),
    ),
    stats: { ...bg.stats(), logRecordsDropped: droppedRecords(logger) },
    inDoubt: recordsInDoubt(logger),
    closed,
    closeMs,
    ...(drain && { drain }),
    maxLoopDelayMs: delay.max / 1e6,
    maxStderrTurnMs: stderrBacklog().maxTurnMs,
    ...(unreportedOnceRead !== undefined && { unreportedOnceRead }),
  };
  writeFileSync(process.env.RESULT_FILE!, JSON.stringify(result));
  process.exit(0);
}

/**
 * One request queues the records as tasks that fail (or, with `drainTimeoutMs`, that never end
 * and are abandoned by drain()): each failure or abandonment is a line with the record's id as
 * the request's... task name.
 */
async function failTasks(bg: BackgroundTasksMiddleware, padding: string): Promise<Result['drain']> {
  const app = express();
  app.use(bg);
  app.use((_req, res) => {
    for (let i = 0; i < spec.records; i++) {
      const id = `r${i}`;
      res.locals.backgroundTasks.add({
        name: id,
        run:
          spec.drainTimeoutMs === undefined
            ? () => {
                throw new Error(`failed ${padding}`);
              }
            : () => new Promise(() => undefined),
      });
    }
    res.end();
  });
  app.use(httpErrorHandler({ backgroundTasks: bg }));
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const path = { redacting: '/?token=SECRET-1', throwing: '/throw?token=SECRET-1', json: '/' }[
    spec.format ?? 'json'
  ];
  await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
  });
  server.close();
  if (spec.drainTimeoutMs === undefined) {
    await bg.idle();
    return undefined;
  }
  while (bg.stats().running === 0) await new Promise((resolve) => setImmediate(resolve));
  const started = performance.now();
  const { completed, abandoned } = await bg.drain({ timeoutMs: spec.drainTimeoutMs });
  return { completed, abandoned, ms: performance.now() - started };
}

void main();
