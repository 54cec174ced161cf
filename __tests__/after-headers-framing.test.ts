/**
 * An error after the response's head was set, as a client on a keep-alive connection sees it,
 * over real HTTP on Express 5 and 4:
 * - the head never reached the socket (writeHead() alone, a HEAD response): a proper plain-text
 *   500 is sent instead, and the connection serves the next request;
 * - the framing is complete (every byte of its Content-Length, or a 204 whose head is out): the
 *   response stands, and the next request on that socket runs;
 * - anything else (a body short of its length, a chunked body): the connection is cut, so the
 *   client sees an incomplete response, never one that looks whole.
 */
import http, { type IncomingMessage } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import compression from 'compression';
import type { Express, RequestHandler } from 'express';
import createError from 'http-errors';
import { LOG_MESSAGES } from '../lib';
import { EXPRESS_VERSIONS, makeApp, type ExpressFactory } from './support/apps';

interface Answer {
  status?: number;
  headers?: IncomingMessage['headers'];
  body: string;
  /** The response arrived whole, as its framing says. */
  complete: boolean;
  /** The request failed before any response (a reset connection). */
  error?: string;
  /** The server-side port of the client's socket: the same for requests on one connection. */
  socket?: number;
}

describe.each(EXPRESS_VERSIONS)('%s', (_version, createExpress) => {
  test('Content-Length 5 and all 5 bytes written, then a throw: the response stands, and the next POST on that keep-alive socket runs (10 times in a row)', async () => {
    const { app, bg, log, notified } = appWith(createExpress, (app) => {
      app.get('/whole', (_req, res) => {
        res.writeHead(200, { 'Content-Length': 5 });
        res.write('hello');
        throw new Error('after the body');
      });
    });
    await withServer(app, async (call) => {
      for (let i = 0; i < 10; i++) {
        const whole = await call('GET', '/whole');
        expect(whole).toMatchObject({ status: 200, body: 'hello', complete: true });
        const next = await call('POST', '/next', 'x');
        expect(next).toMatchObject({ status: 201, body: 'ran', complete: true });
        expect(next.socket).toBe(whole.socket);
      }
    });
    await bg.idle();
    expect(notified).toHaveLength(10);
    expect(log.find(LOG_MESSAGES.requestFailed)).toHaveLength(10);
  });

  test('Content-Length 5 and 3 bytes written, then a throw: the connection is cut, the client sees an incomplete body', async () => {
    const { app } = appWith(createExpress, (app) => {
      app.get('/short', (_req, res) => {
        res.writeHead(200, { 'Content-Length': 5 });
        res.write('hel');
        throw new Error('mid-body');
      });
    });
    await withServer(app, async (call) => {
      expect(await call('GET', '/short')).toMatchObject({
        status: 200,
        body: 'hel',
        complete: false,
      });
      // A new connection still serves.
      expect(await call('POST', '/next', 'x')).toMatchObject({ status: 201, complete: true });
    });
  });

  test('a chunked body, then a throw: cut, never completed by the handler', async () => {
    const { app } = appWith(createExpress, (app) => {
      app.get('/chunked', (_req, res) => {
        res.write('part');
        throw new Error('mid-stream');
      });
    });
    await withServer(app, async (call) => {
      expect(await call('GET', '/chunked')).toMatchObject({
        status: 200,
        body: 'part',
        complete: false,
      });
    });
  });

  test('HEAD with the head set and a body written, then a throw: a proper 500 (Node had not sent the head), and the connection serves on', async () => {
    const { app, log } = appWith(createExpress, (app) => {
      app.head('/head', (_req, res) => {
        res.writeHead(200, { 'Content-Length': 5, 'Cache-Control': 'public, max-age=600' });
        res.write('hello');
        throw new Error('secret at 10.0.0.7');
      });
    });
    await withServer(app, async (call) => {
      const head = await call('HEAD', '/head');
      expect(head).toMatchObject({ status: 500, body: '', complete: true });
      expect(head.headers).toMatchObject({
        'content-type': 'text/plain; charset=utf-8',
        'content-length': String('Internal Server Error'.length),
        'x-content-type-options': 'nosniff',
      });
      expect(head.headers!['cache-control']).toBeUndefined();
      const next = await call('POST', '/next', 'x');
      expect(next).toMatchObject({ status: 201, body: 'ran' });
      expect(next.socket).toBe(head.socket);
    });
    expect(log.find(LOG_MESSAGES.requestFailed)).toEqual([
      expect.objectContaining({ status: 500, method: 'HEAD' }),
    ]);
  });

  test('writeHead(200) alone, then a throw: the head never left, so the client gets the plain-text 500 with its status text', async () => {
    const { app } = appWith(createExpress, (app) => {
      app.get('/head-only', (_req, res) => {
        res.writeHead(200, 'All Good', { 'Content-Length': 2 });
        throw new Error('before the body');
      });
    });
    await withServer(app, async (call) => {
      const answer = await call('GET', '/head-only');
      expect(answer).toMatchObject({
        status: 500,
        body: 'Internal Server Error',
        complete: true,
      });
      expect(answer.headers!['content-length']).toBe(String('Internal Server Error'.length));
      expect(await call('POST', '/next', 'x')).toMatchObject({ status: 201, body: 'ran' });
    });
  });

  test('writeHead(204) with its head flushed, then a throw: the empty response stands, and the connection serves on', async () => {
    const { app } = appWith(createExpress, (app) => {
      app.delete('/gone', (_req, res) => {
        res.writeHead(204);
        res.flushHeaders();
        throw new Error('after the head');
      });
    });
    await withServer(app, async (call) => {
      const gone = await call('DELETE', '/gone');
      expect(gone).toMatchObject({ status: 204, complete: true });
      const next = await call('POST', '/next', 'x');
      expect(next).toMatchObject({ status: 201, body: 'ran' });
      expect(next.socket).toBe(gone.socket);
    });
  });

  test('an override that set the head and threw before any byte left: the default response is sent; one that wrote part of a body: cut', async () => {
    const { app } = appWith(
      createExpress,
      (app) => {
        app.get('/override-head', () => {
          throw createError(409, 'head');
        });
        app.get('/override-part', () => {
          throw createError(409, 'part');
        });
      },
      [
        {
          match: 409,
          handle: (error, _req, res) => {
            res.writeHead(418, { 'Content-Length': 10 });
            if (error.message === 'part') res.write('tea');
            throw new Error('override broke');
          },
        },
      ],
    );
    await withServer(app, async (call) => {
      expect(await call('GET', '/override-head')).toMatchObject({
        status: 409,
        body: 'head',
        complete: true,
      });
      expect(await call('GET', '/override-part')).toMatchObject({
        status: 418,
        body: 'tea',
        complete: false,
      });
    });
  });
});

describe.each(EXPRESS_VERSIONS)(
  '%s, with other middlewares and protocols',
  (_version, createExpress) => {
    test('behind compression, the head set and nothing sent: not reopened (compression wraps the end in gzip), cut; the next request is served whole', async () => {
      const { app } = appWith(
        createExpress,
        (app) => {
          app.get('/html', (_req, res) => {
            res.writeHead(200, { 'Content-Type': 'text/html' });
            throw new Error('before the body');
          });
        },
        undefined,
        compression({ threshold: 0 }),
      );
      await withServer(app, async (call) => {
        // Reopened, the 500 went out with a plain length and 41 bytes of gzip after it, which
        // the next response on the socket then began with.
        const cutShort = await call('GET', '/html', undefined, { 'Accept-Encoding': 'gzip' });
        // Cut before any byte: the client sees the connection reset, not a response it cannot parse.
        expect(cutShort).toMatchObject({ error: 'ECONNRESET', complete: false });
        expect(await call('POST', '/next', 'x')).toMatchObject({
          status: 201,
          body: 'ran',
          complete: true,
        });
      });
    });

    test('writeHead() with Transfer-Encoding: chunked, then a throw: the reopened 500 has a length and no Transfer-Encoding', async () => {
      const { app } = appWith(createExpress, (app) => {
        app.get('/te', (_req, res) => {
          res.writeHead(200, { 'Transfer-Encoding': 'chunked', Trailer: 'X-Sum' });
          throw new Error('before the body');
        });
      });
      await withServer(app, async (call) => {
        const answer = await call('GET', '/te');
        expect(answer).toMatchObject({
          status: 500,
          body: 'Internal Server Error',
          complete: true,
        });
        expect(answer.headers!['transfer-encoding']).toBeUndefined();
        expect(answer.headers!.trailer).toBeUndefined();
        expect(answer.headers!['content-length']).toBe(String('Internal Server Error'.length));
      });
    });

    test('a pipelined response cut while it waits for the socket (Node 24 only marked it): the connection is closed, the notifier runs', async () => {
      const { app, bg, notified } = appWith(createExpress, (app) => {
        app.get('/slow', (_req, res) => void setTimeout(() => res.send('slow'), 100));
        app.get('/short', (_req, res) => {
          res.writeHead(200, { 'Content-Length': 5 });
          res.write('hel');
          throw new Error('short');
        });
      });
      await withServer(app, async (_call, port) => {
        const raw = await rawExchange(
          port,
          'GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /short HTTP/1.1\r\nHost: x\r\n\r\n',
        );
        expect(raw.text).toContain('slow');
        expect(raw.ended).not.toBe('open');
      });
      await bg.idle();
      expect(notified).toEqual(['short']);
    });

    test("an override that wrote the whole body of its length through an `end` of the app's own that throws, then failed: cut, and nothing escapes", async () => {
      const { app, bg, log, notified } = appWith(
        createExpress,
        (app) => {
          app.get('/override', () => {
            throw createError(409, 'conflict');
          });
        },
        [
          {
            match: 409,
            handle: async (_error, _req, res) => {
              res.end = () => {
                throw new Error('end broke');
              };
              res.writeHead(409, { 'Content-Length': 2 });
              res.write('no');
              await Promise.resolve();
              throw new Error('override broke');
            },
          },
        ],
      );
      await withServer(app, async (call) => {
        // The body is whole and the connection cut: a request the client sends on it meanwhile
        // may be lost, which an `end` that throws leaves no way to avoid.
        expect(await call('GET', '/override')).toMatchObject({ status: 409, body: 'no' });
      });
      await bg.idle();
      expect(notified).toEqual(['conflict']);
      expect(log.find(LOG_MESSAGES.overrideFailed)).toEqual([
        expect.objectContaining({ reason: 'threw' }),
      ]);
    });
  },
);

/** An app with the routes, a `POST /next` that answers 201 "ran", and a notifier. */
function appWith(
  createExpress: ExpressFactory,
  routes: (app: Express) => void,
  overrides?: import('../lib').ErrorOverride[],
  before?: RequestHandler,
) {
  const notified: string[] = [];
  const built = makeApp(
    createExpress,
    (app) => {
      routes(app);
      app.post('/next', (_req, res) => void res.status(201).send('ran'));
    },
    {
      errors: {
        notify: (error) => void notified.push(error.message),
        ...(overrides !== undefined && { overrides }),
      },
      ...(before !== undefined && { before }),
    },
  );
  return { ...built, notified };
}

type Call = (
  method: string,
  path: string,
  body?: string,
  headers?: Record<string, string>,
) => Promise<Answer>;

/** Serves `app` on a real loopback server and calls it through one keep-alive socket at a time. */
async function withServer(
  app: Express,
  run: (call: Call, port: number) => Promise<void>,
): Promise<void> {
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    await run(
      (method, path, body, headers) => call(agent, port, method, path, body, headers),
      port,
    );
  } finally {
    agent.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

function call(
  agent: http.Agent,
  port: number,
  method: string,
  path: string,
  body?: string,
  headers?: Record<string, string>,
): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('error', () => undefined); // 'aborted': complete stays false
      res.on('close', () =>
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: text,
          complete: res.complete,
          socket: res.socket?.localPort,
        }),
      );
    });
    req.on('error', (error: NodeJS.ErrnoException) =>
      resolve({ body: '', complete: false, error: error.code ?? error.message }),
    );
    req.end(body);
  });
}

/**
 * Writes `text` on a new raw connection and reads until the server ends it: with a FIN
 * (`closed`), a reset (`reset`), or not within a second of the last byte (`open`).
 */
function rawExchange(
  port: number,
  text: string,
): Promise<{ text: string; ended: 'closed' | 'reset' | 'open' }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    const done = (ended: 'closed' | 'reset' | 'open') => {
      clearTimeout(idle);
      socket.destroy();
      resolve({ text: received, ended });
    };
    let idle = setTimeout(() => done('open'), 1_000);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      clearTimeout(idle);
      idle = setTimeout(() => done('open'), 1_000);
    });
    socket.on('end', () => done('closed'));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      done(error.code === 'ECONNRESET' ? 'reset' : 'closed'),
    );
    socket.write(text);
  });
}
