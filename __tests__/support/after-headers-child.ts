/**
 * The child process of after-headers.test.ts: serves Express 5 and 4 apps whose routes write part
 * of a response, then fail with a hostile value; requests each once over real HTTP, and prints one
 * JSON report. Uncaught exceptions are recorded rather than fatal, so the report can say so.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import { EXPRESS_VERSIONS, makeApp } from './apps';

const uncaught: string[] = [];
process.on('uncaughtException', (error) => uncaught.push(`exception: ${describe(error)}`));
process.on('unhandledRejection', (reason) => uncaught.push(`rejection: ${describe(reason)}`));

const trap = () => {
  throw new Error('trap');
};
const hostileValues: Record<string, () => unknown> = {
  'a proxy whose traps throw': () =>
    new Proxy({}, { get: trap, getPrototypeOf: trap, has: trap, ownKeys: trap }),
  'a revoked proxy': () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  },
  'an object whose toString throws': () => ({ toString: trap }),
  'an error whose stack getter throws': () =>
    Object.defineProperty(new Error('stackless'), 'stack', { get: trap }),
  'Object.create(null)': () => Object.create(null),
  'an error whose message getter throws': () =>
    Object.defineProperty(new Error(), 'message', { get: trap }),
  'an object whose status getter throws': () => Object.defineProperty({}, 'status', { get: trap }),
};

type Route = (value: unknown, res: Response, next: NextFunction) => unknown;
const ways: Record<string, Route> = {
  'thrown in the route': (value) => {
    throw value;
  },
  'passed to next() later': (value, _res, next) => void setImmediate(() => next(value)),
  'rejected by an async route': async (value) => {
    await Promise.resolve();
    throw value;
  },
};

async function main(): Promise<void> {
  const outcomes: object[] = [];
  let stillServing = true;
  for (const [version, createExpress] of EXPRESS_VERSIONS) {
    const { app, bg, log } = makeApp(createExpress, (app) => {
      app.get('/fail/:value/:how', (req: Request, res: Response, next: NextFunction) => {
        res.write('partial');
        return ways[String(req.params.how)](hostileValues[String(req.params.value)](), res, next);
      });
      app.get('/ok', (_req, res) => void res.send('ok'));
    });
    const server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    let n = 0;
    for (const value of Object.keys(hostileValues)) {
      for (const how of Object.keys(ways)) {
        if (version === 'Express 4' && how === 'rejected by an async route') continue;
        const requestId = `req-${++n}`;
        const url = `/fail/${encodeURIComponent(value)}/${encodeURIComponent(how)}`;
        const response = await get(port, url, requestId);
        await bg.idle();
        const lines = log.records.filter((record) => record.requestId === requestId);
        outcomes.push({
          version,
          value,
          how,
          ...response,
          logged: lines.filter((record) => record.message === 'request failed').length,
          otherLines: lines.filter((r) => r.message !== 'request failed').map((r) => r.message),
        });
      }
    }
    const ok = await get(port, '/ok', 'ok');
    stillServing &&= ok.status === 200 && ok.body === 'ok' && ok.complete;
    await new Promise((resolve) => server.close(resolve));
  }
  process.stdout.write(`${JSON.stringify({ outcomes, uncaught, stillServing })}\n`);
}

/** One GET on a fresh connection; resolves when the connection has closed, however it ended. */
function get(
  port: number,
  path: string,
  requestId: string,
): Promise<{ status: number; body: string; complete: boolean; hung: boolean }> {
  return new Promise((resolve) => {
    let hung = false;
    let status = 0;
    let body = '';
    let complete = false;
    const req = http.get({
      host: '127.0.0.1',
      port,
      path,
      agent: false,
      headers: { 'x-request-id': requestId },
    });
    req.on('response', (res) => {
      status = res.statusCode!;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (complete = res.complete));
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    // A safety net, not a wait: a connection nobody closes is a failure to report, not to hang on.
    const timer = setTimeout(() => ((hung = true), req.destroy()), 5_000);
    req.on('close', () => {
      clearTimeout(timer);
      resolve({ status, body, complete, hung });
    });
  });
}

function describe(value: unknown): string {
  try {
    return value instanceof Error ? `${value.name}: ${value.message}` : String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

void main();
