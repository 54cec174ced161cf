/**
 * The server of starvation.test.ts, in its own process so that a starved event loop cannot
 * starve the test too: `POST /start` sets a task going that re-adds itself (`KIND`: `sync`, or
 * `async` without real I/O), `GET /health` answers with how many times it has run. Prints
 * `{ "port": n }` once listening.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import { backgroundTasks } from '../../lib';
import { captureLogger } from './capture';

const runs = { count: 0 };
const bg = backgroundTasks({ logger: captureLogger().logger });
const app = express();
app.use(bg);
app.get('/health', (_req, res) => void res.end(String(runs.count)));
app.post('/start', (_req, res) => {
  const tasks = res.locals.backgroundTasks;
  const again =
    process.env.KIND === 'async'
      ? async () => {
          runs.count++;
          await Promise.resolve();
          tasks.add(again);
        }
      : () => {
          runs.count++;
          tasks.add(again);
        };
  tasks.add(again);
  res.end('started');
});
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
