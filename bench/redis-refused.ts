/**
 * What a worker and a producer cost while Redis refuses them: a redis-server full at `maxmemory`
 * (2 MB, `noeviction`), and one that wants another password. For each, over a window (10 s by
 * default, from 1 s after the start), the process's CPU time (`process.cpuUsage()`), Redis's
 * (`INFO cpu`) and, from Redis's `INFO stats`, per second: the commands it ran (`total_commands_processed`, which counts
 * the commands inside a script and not those refused before they ran), the error replies it
 * sent (`total_error_replies`) and the connections it accepted (`total_connections_received`).
 *
 * Child process entry of `npm run bench -- --only redis` (run.ts): `redis-refused.ts <seconds>`.
 */
import { Redis } from 'ioredis';
import { bullmqDurable, startWorker } from '../lib/bullmq';
import { recordTask } from '../__tests__/support/durable-tasks';
import { fillUp, startRedis } from '../__tests__/support/redis';
import { childMain } from './children';
import { silentLogger } from './logger';

const WINDOW_MS = Number(process.argv[2]) * 1_000;

export interface RefusedRow {
  case: string;
  cpuPercentOfOneCore: number;
  redisCpuPercentOfOneCore: number;
  redisCommandsPerSecond: number;
  redisErrorRepliesPerSecond: number;
  redisConnectionsPerSecond: number;
  errorEventsPerSecond: number;
}

type RedisCounts = Record<'cpuSeconds' | 'commands' | 'errorReplies' | 'connections', number>;

async function main(): Promise<RefusedRow[]> {
  const full = await startRedis(['--maxmemory', '2mb', '--maxmemory-policy', 'noeviction']);
  const locked = await startRedis(['--requirepass', 'the-right-one']);
  try {
    await fillUp(full.url);
    const wrong = `redis://:wrong@127.0.0.1:${locked.port}`;
    const admin = `redis://:the-right-one@127.0.0.1:${locked.port}`;
    return [
      await measureWorker('worker, Redis out of memory', full.url, full.url),
      await measureWorker('worker, wrong password', wrong, admin),
      await measureProducer('producer, Redis out of memory', full.url, full.url),
      await measureProducer('producer, wrong password', wrong, admin),
    ];
  } finally {
    await Promise.all([full.stop(), locked.stop()]);
  }
}

async function measureWorker(label: string, url: string, adminUrl: string): Promise<RefusedRow> {
  const durable = startWorker({
    connection: { url },
    queueName: 'refused',
    tasks: [recordTask],
    logger: silentLogger(),
  });
  let errors = 0;
  durable.worker.on('error', () => (errors += 1));
  // Past the start-up: the connections are made (or refused) and the loop is at its pace.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const row = await measure(label, adminUrl, () => errors);
  await durable.close();
  return row;
}

async function measureProducer(label: string, url: string, adminUrl: string): Promise<RefusedRow> {
  let errors = 0;
  const durable = bullmqDurable({
    connection: { url },
    queueName: 'refused',
    logger: silentLogger(),
  });
  const job = { name: 'record', payload: { id: 'p' }, timeoutMs: 0, retries: 0, retryDelayMs: 0 };
  const request = { id: 'r', method: 'POST', url: '/', statusCode: 202, aborted: false };
  await durable.enqueue({ ...job, request }).catch(() => (errors += 1));
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  // One enqueue a second, as a web process under light traffic.
  const timer = setInterval(
    () => void durable.enqueue({ ...job, request }).catch(() => (errors += 1)),
    1_000,
  );
  const row = await measure(label, adminUrl, () => errors);
  clearInterval(timer);
  await durable.close();
  return row;
}

async function measure(label: string, adminUrl: string, errors: () => number): Promise<RefusedRow> {
  const admin = new Redis(adminUrl);
  try {
    const before = await redisCounts(admin);
    const errorsBefore = errors();
    const cpuBefore = process.cpuUsage();
    const startedAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    const cpu = process.cpuUsage(cpuBefore);
    const seconds = (performance.now() - startedAt) / 1_000;
    const after = await redisCounts(admin);
    const perSecond = (count: number) => round(count / seconds);
    return {
      case: label,
      cpuPercentOfOneCore: round((cpu.user + cpu.system) / 1e4 / seconds),
      redisCpuPercentOfOneCore: round(((after.cpuSeconds - before.cpuSeconds) * 100) / seconds),
      // Less the two INFO that read the counts at the end.
      redisCommandsPerSecond: perSecond(after.commands - before.commands - 2),
      redisErrorRepliesPerSecond: perSecond(after.errorReplies - before.errorReplies),
      redisConnectionsPerSecond: perSecond(after.connections - before.connections),
      errorEventsPerSecond: perSecond(errors() - errorsBefore),
    };
  } finally {
    admin.disconnect();
  }
}

async function redisCounts(client: Redis): Promise<RedisCounts> {
  const info = (await client.info('stats')) + (await client.info('cpu'));
  const count = (field: string) => Number(new RegExp(`${field}:([\\d.]+)`).exec(info)![1]);
  return {
    cpuSeconds: count('used_cpu_user') + count('used_cpu_sys'),
    commands: count('total_commands_processed'),
    errorReplies: count('total_error_replies'),
    connections: count('total_connections_received'),
  };
}

const round = (value: number) => Math.round(value * 10) / 10;

childMain(main);
