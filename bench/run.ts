/**
 * `npm run bench`: runs every part of the benchmark (in-process cost per request, HTTP latency
 * and throughput, queue micro-benchmark, heap checks, payload check, the PostgreSQL fast path
 * against pg-boss, a worker and a producer that Redis refuses), prints the tables and writes them to bench/RESULTS.md. `npm run bench --
 * --help` lists the flags; `--quick` is a smoke run.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from './args';
import { runChild } from './children';
import { CPU_COMPARISONS, HTTP_COMPARISONS } from './comparisons';
import type { CpuSamples } from './cpu-compare';
import type { GrowthResult } from './heap-growth';
import type { PendingRow } from './heap-pending';
import { runHttp } from './http-load';
import type { PayloadCheckRow } from './payload-check';
import type { PgBossResult } from './pgboss';
import type { ThroughputRow } from './queue-throughput';
import type { RefusedRow } from './redis-refused';
import { renderReport, type Results } from './report';

const startedAt = Date.now();
const log = (line: string) =>
  process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(0).padStart(3)} s] ${line}\n`);

function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib'], {
      encoding: 'utf8',
    }).trim();
    return dirty === '' ? head : `${head} (lib/ has uncommitted changes)`;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const loadBefore = os.loadavg();
  const results: Results = {
    env: {
      date: new Date().toISOString(),
      command: [
        'npm run bench',
        ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : []),
      ].join(' '),
      node: process.version,
      cpus: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown'}`,
      platform: `${os.type()} ${os.release()} ${os.arch()}`,
      commit: commit(),
      loadBefore,
      loadAfter: loadBefore,
      seconds: 0,
    },
    args,
  };
  const cpuFlags = { nodeFlags: ['--expose-gc'] };

  if (args.only.has('cpu')) {
    const comparisons = CPU_COMPARISONS.filter((c) => !args.quick || c.quick);
    const common = [String(args.batch), String(args.rounds), String(args.warmup)];
    const pairsOf = (list: typeof comparisons) => list.map((c) => `${c.reference}:${c.candidate}`);
    results.cpu = [];
    if (args.quick) {
      log(`in process: ${comparisons.length} comparisons in one process`);
      results.cpu = await runChild<CpuSamples[]>(
        'cpu-compare.ts',
        [...common, ...pairsOf(comparisons)],
        cpuFlags,
      );
    } else {
      for (const comparison of comparisons) {
        log(`in process: ${comparison.key} ${comparison.label}`);
        results.cpu.push(
          ...(await runChild<CpuSamples[]>(
            'cpu-compare.ts',
            [...common, ...pairsOf([comparison])],
            cpuFlags,
          )),
        );
      }
    }
  }

  if (args.only.has('http')) {
    const comparisons = HTTP_COMPARISONS.filter((c) => !args.quick || c.quick);
    log(
      `http: ${comparisons.length} comparisons, ${args.httpRounds} pairs of ${args.duration} s runs each`,
    );
    results.http = await runHttp(
      comparisons,
      {
        rounds: args.httpRounds,
        connections: args.connections,
        duration: args.duration,
        warmup: args.httpWarmup,
      },
      log,
    );
  }

  if (args.only.has('queue')) {
    log(`queue: ${args.tasks} tasks`);
    results.queue = await runChild<ThroughputRow[]>('queue-throughput.ts', [String(args.tasks)]);
  }

  if (args.only.has('heap')) {
    log(`heap: ${args.pending} pending tasks; growth over ${args.requests} requests`);
    results.pending = await runChild<PendingRow[]>(
      'heap-pending.ts',
      [String(args.pending)],
      cpuFlags,
    );
    results.growth = await runChild<GrowthResult>(
      'heap-growth.ts',
      [String(args.requests)],
      cpuFlags,
    );
  }

  if (args.only.has('payload')) {
    log(`payload check: ${args.payloadRuns} runs per mode`);
    results.payload = await runChild<PayloadCheckRow[]>(
      'payload-check.ts',
      [String(args.payloadRuns), args.quick ? '0.1' : '1'],
      cpuFlags,
    );
  }

  if (args.only.has('pgboss')) {
    const unavailable = pgBossUnavailable();
    if (unavailable !== undefined) {
      log(`pgboss: skipped on Node ${process.versions.node}: ${unavailable}`);
      results.pgbossSkipped = unavailable;
    } else {
      log(
        `pgboss: ${args.pgRounds} rounds: latency ${args.pgLatency} samples, throughput ` +
          `${args.pgTasks} tasks, cost ${args.pgCost} requests, per variant and round`,
      );
      results.pgboss = await runChild<PgBossResult>(
        'pgboss.ts',
        [args.pgRounds, args.pgLatency, args.pgTasks, args.pgCost].map(String),
      );
    }
  }

  if (args.only.has('redis')) {
    log(`redis: a worker and a producer refused by Redis, ${args.redisSeconds} s each case`);
    results.redis = await runChild<RefusedRow[]>('redis-refused.ts', [String(args.redisSeconds)]);
  }

  results.env.loadAfter = os.loadavg();
  results.env.seconds = (Date.now() - started) / 1000;
  const report = renderReport(results);
  process.stdout.write(`${report}\n`);
  if (args.out !== '') {
    const file = path.resolve(__dirname, '..', args.out);
    writeFileSync(file, report.endsWith('\n') ? report : `${report}\n`);
    log(`written to ${path.relative(process.cwd(), file)}`);
  }
}

/** Why the pg-boss entry cannot load on this Node (its own check says), or undefined when it can. */
function pgBossUnavailable(): string | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- its check runs on load, and throws
    require('../lib/pg-boss/peers');
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
