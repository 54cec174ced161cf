/**
 * The child process of overflow.test.ts: one request adds `ADDS` no-op tasks with the default
 * logger (JSON lines on stdout), past the default `maxPending`, in a process whose heap is
 * limited by the test (`--max-old-space-size`). Writes what it measured as one JSON line on
 * stderr once the tasks are done: the counters, and the heap used right after the adds and at
 * the end (after a GC), in MB.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { backgroundTasks } from '../../lib';

const adds = Number(process.env.ADDS);
const MB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc!;
let heapAfterAddsMB = 0;

const bg = backgroundTasks();
const app = express();
app.use(bg);
app.get('/', (_req, res) => {
  const tasks = res.locals.backgroundTasks;
  for (let i = 0; i < adds; i++) tasks.add(function noop() {});
  heapAfterAddsMB = process.memoryUsage().heapUsed / MB;
  res.end('added');
});
const server = app.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
    res.resume();
    res.on('end', async () => {
      await bg.idle();
      await bg.drain();
      gc();
      const heapAtEndMB = process.memoryUsage().heapUsed / MB;
      process.stderr.write(
        `${JSON.stringify({ stats: bg.stats(), heapAfterAddsMB, heapAtEndMB })}\n`,
      );
      server.close();
    });
  });
});
