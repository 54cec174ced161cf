/**
 * The demo app: the FastAPI BackgroundTasks example, ported. A notification is queued on success;
 * a message containing "hello" raises a 500 whose handler queues an ops notification; one route's
 * task always throws, to show the failure arriving in the log while the server keeps serving.
 */
import express, { type RequestHandler } from 'express';
import createError from 'http-errors';
import type { Logger } from 'winston';
import { backgroundTasks, httpErrorHandler, notFound, type DurableQueue } from '../lib';
import { sendNotification, writeNotification } from './notifications';
import { traceRequests } from './telemetry';

export interface DemoOptions {
  logger?: Logger;
  /** A durable queue for the defined notification task (see server.ts: set when REDIS_URL is). */
  durable?: DurableQueue;
  /** More routers, by path, mounted before the 404 (the queue dashboard, when REDIS_URL is set). */
  mount?: Record<string, RequestHandler>;
  /** `POST /orders` (see orders.ts). Default: a 501 that says the demo was started without it. */
  orders?: RequestHandler;
}

export function createDemoApp({ logger, durable, mount = {}, orders }: DemoOptions = {}) {
  const bg = backgroundTasks({ logger, durable });
  const onError = httpErrorHandler({
    backgroundTasks: bg,
    notify: function notifyOps(err, req) {
      return writeNotification(
        'ops@example.com',
        `${req.method} ${req.originalUrl} failed: ${err.status} ${err.message}`,
      );
    },
  });
  const app = express();
  app.use(traceRequests);
  app.use(bg);

  app.post('/send-notification/:email', (req, res) => {
    const message = typeof req.query.message === 'string' ? req.query.message : 'Success';
    if (message.includes('hello')) throw createError(500, 'Something went wrong');
    res.locals.backgroundTasks.add(sendNotification, { email: req.params.email, message });
    res.json({ message: 'Request has been successfully submitted.' });
  });

  app.post('/failing-task', (_req, res) => {
    res.locals.backgroundTasks.add(function chargeCard() {
      throw new Error('payment provider unreachable');
    });
    res.status(202).json({ message: 'Accepted; the task will fail, look at the log.' });
  });

  // A task that takes `ms` milliseconds (at most a minute) and stops early when its signal is aborted.
  app.post('/report', (req, res) => {
    const ms = Math.min(Number(req.query.ms) || 1_000, 60_000);
    res.locals.backgroundTasks.add({
      name: 'build-report',
      timeoutMs: 120_000,
      run: async ({ signal, request }) => {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, ms);
          signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
        });
        if (!signal.aborted)
          await writeNotification('reports@example.com', `report ${request.id} built in ${ms} ms`);
      },
    });
    res.status(202).json({ message: `Report queued; it takes ${ms} ms.` });
  });

  app.post(
    '/orders',
    orders ??
      ((_req, res) => void res.status(501).type('text/plain').send('POST /orders is not set up\n')),
  );

  for (const [path, router] of Object.entries(mount)) app.use(path, router);
  app.use(notFound());
  app.use(onError);
  return { app, bg, onError };
}
