/**
 * The child process of logging.test.ts, for what only a real process shows: records that go to
 * its stderr, and its heap. `MODE=stuck`: 20,000 failing tasks logged through a transport that
 * never acknowledges a record, then the heap growth as a JSON line on stdout. `MODE=closed`: a
 * failing task after `closeLogger()`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import winston from 'winston';
import Transport from 'winston-transport';
import { backgroundTasks, closeLogger } from '../../lib';

const say = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);

/** A transport whose `log()` never calls back: a network transport stuck on a dead peer. */
class Stuck extends Transport {
  override log(): void {}
}

async function main(): Promise<void> {
  const stuck = process.env.MODE === 'stuck';
  const logger = winston.createLogger({
    format: winston.format.json(),
    transports: [stuck ? new Stuck() : new winston.transports.Console()],
  });
  const bg = backgroundTasks({ logger, maxPending: Infinity });
  const app = express();
  app.use(bg);
  app.post('/fail/:count', (req, res) => {
    for (let i = 0; i < Number(req.params.count); i++)
      res.locals.backgroundTasks.add(function failing() {
        throw new Error(`failure ${i} ${'x'.repeat(200)}`);
      });
    res.end();
  });
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const fail = async (count: number) => {
    await fetch(`http://127.0.0.1:${port}/fail/${count}`, { method: 'POST' });
    await bg.idle();
  };
  if (stuck) {
    await fail(2_000); // fills the stuck logger up to its limit, and warms up
    const before = heapAfterGc();
    await fail(20_000);
    say({ heapGrowth: heapAfterGc() - before, stats: bg.stats() });
  } else {
    await closeLogger(logger);
    await fail(1);
    say({ stats: bg.stats() });
  }
  server.close();
}

function heapAfterGc(): number {
  global.gc!();
  global.gc!();
  return process.memoryUsage().heapUsed;
}

void main();
