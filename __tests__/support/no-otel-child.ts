/**
 * The child process of otel-optional.test.ts, run from its scratch project, where
 * `@opentelemetry/api` is not installed: a real Express app whose background tasks succeed, fail
 * and time out, and whose error handler runs a notifier after a 500. Prints what it saw as one
 * JSON line on stdout.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import createError from 'http-errors';
import { backgroundTasks, httpErrorHandler } from '../../lib';
import { captureLogger } from './capture';

async function main(): Promise<void> {
  const log = captureLogger();
  const notified: number[] = [];
  const bg = backgroundTasks({ logger: log.logger, timeoutMs: 50 });
  const app = express();
  app.use(bg);
  app.get('/tasks', (_req, res) => {
    res.locals.backgroundTasks
      .add(function fine() {})
      .add(async function broken() {
        throw new Error('broken');
      })
      .add({
        name: 'slow',
        run: (ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)),
      });
    res.send('queued');
  });
  app.get('/fails', () => {
    throw createError(503, 'database down');
  });
  app.use(httpErrorHandler({ logger: log.logger, notify: (error) => notified.push(error.status) }));

  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const responses = [];
  for (const url of ['/tasks', '/fails']) {
    const response = await fetch(base + url);
    responses.push({ status: response.status, body: await response.text() });
  }
  await bg.idle();
  const drained = await bg.drain();
  server.close();

  process.stdout.write(
    `${JSON.stringify({
      apiResolves: resolves('@opentelemetry/api'),
      loadedOtel: Object.keys(require.cache).filter((file) => file.includes('@opentelemetry')),
      responses,
      stats: bg.stats(),
      drained,
      notified,
      records: log.records.map(({ level, message, task, timedOut, error, line }) => ({
        level,
        message,
        task,
        timedOut,
        error: (error as { message?: string } | undefined)?.message,
        line,
      })),
    })}\n`,
  );
}

/** Whether `name` can be found from here: the same folders the library's own lookup walks. */
function resolves(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

void main();
