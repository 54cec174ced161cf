/**
 * Load on loopback: a few thousand requests, about a hundred at a time, a fifth of them aborted
 * by the client mid-response, every request queuing tasks (some of which fail). At the end every
 * task is accounted for and the server still answers. Bounded in count and in time.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { makeApp } from './support/apps';

const REQUESTS = 3_000;
const CONCURRENCY = 100;
const ABORT_EVERY = 5;

test(`${REQUESTS} requests, ${CONCURRENCY} at a time, one in ${ABORT_EVERY} aborted: every task accounted for`, async () => {
  let added = 0;
  let sawAborted = 0;
  const { app, bg, log } = makeApp(
    express,
    (app) => {
      app.get('/work/:n', (req, res) => {
        const n = Number(req.params.n);
        const tasks = res.locals.backgroundTasks;
        added += 3;
        tasks
          .add(async () => {
            await new Promise((resolve) => setImmediate(resolve));
          })
          .add({
            name: 'sometimes fails',
            run: ({ request }) => {
              if (request.aborted) sawAborted++;
              if (n % 7 === 0) throw new Error(`task of request ${n} failed`);
            },
          })
          .add(() => undefined);
        if (req.query.abort === '1') {
          res.write('partial'); // the client hangs up once it sees this
          return;
        }
        res.json({ n });
      });
      app.get('/health', (_req, res) => void res.send('ok'));
    },
    { tasks: { concurrency: 32 } },
  );
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  let next = 0;
  let answered = 0;
  let aborted = 0;

  const oneRequest = (n: number) =>
    new Promise<void>((resolve, reject) => {
      const abort = n % ABORT_EVERY === 0;
      const req = http.get(
        {
          host: '127.0.0.1',
          port,
          path: `/work/${n}${abort ? '?abort=1' : ''}`,
          agent: abort ? false : agent,
        },
        (res) => {
          if (abort) {
            res.once('data', () => {
              req.destroy();
              aborted++;
              resolve();
            });
            return;
          }
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) answered++;
            resolve();
          });
        },
      );
      req.on('error', (error) => (abort ? resolve() : reject(error)));
    });

  try {
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < REQUESTS) await oneRequest(next++);
      }),
    );
    await bg.idle();
    const stats = bg.stats();
    const failing = Math.ceil(REQUESTS / 7);
    expect(answered).toBe(REQUESTS - REQUESTS / ABORT_EVERY);
    expect(aborted).toBe(REQUESTS / ABORT_EVERY);
    expect(added).toBe(REQUESTS * 3);
    expect(stats).toMatchObject({ pending: 0, running: 0, rejected: 0, abandoned: 0, timedOut: 0 });
    expect(stats.succeeded + stats.failed).toBe(added);
    expect(stats.failed).toBe(failing);
    expect(log.records.filter((record) => record.level === 'error')).toHaveLength(failing);
    expect(sawAborted).toBe(REQUESTS / ABORT_EVERY);
    const health = await new Promise<string>((resolve, reject) =>
      http
        .get({ host: '127.0.0.1', port, path: '/health', agent }, (res) => {
          let body = '';
          res.on('data', (chunk) => (body += chunk));
          res.on('end', () => resolve(body));
        })
        .on('error', reject),
    );
    expect(health).toBe('ok');
  } finally {
    agent.destroy();
    server.closeAllConnections();
    server.close();
  }
}, 60_000);
