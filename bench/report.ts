/**
 * Turns the measurements into the printed tables and bench/RESULTS.md: the targets first, then
 * each part's numbers, then how they were taken.
 */
import {
  CONTROL_TOLERANCE,
  CPU_COMPARISONS,
  HTTP_COMPARISONS,
  MAX_BYTES_PER_PENDING_TASK,
  MAX_HEAP_GROWTH,
  SLOW_TASK_MAX_P99_RATIO,
  type Comparison,
} from './comparisons';
import { SCENARIOS, SLOW_CONCURRENCY_NOTE } from './apps';
import type { BenchArgs } from './args';
import type { CpuSamples } from './cpu-compare';
import type { GrowthResult } from './heap-growth';
import type { PendingRow } from './heap-pending';
import type { HttpPairs, HttpSample } from './http-load';
import type { PayloadCheckRow } from './payload-check';
import type { PgBossResult } from './pgboss';
import type { RefusedRow } from './redis-refused';
import type { ThroughputRow } from './queue-throughput';
import { f1, f2, int, mb, pass, table, withSpread, withSpread4 } from './format';
import { pgbossSection, pgbossTargets } from './pgboss-report';
import { median, pairwise, spread, type Spread } from './stats';

export interface Environment {
  date: string;
  command: string;
  node: string;
  cpus: string;
  platform: string;
  commit: string;
  loadBefore: number[];
  loadAfter: number[];
  seconds: number;
}

export interface Results {
  env: Environment;
  args: BenchArgs;
  cpu?: CpuSamples[];
  http?: HttpPairs[];
  queue?: ThroughputRow[];
  pending?: PendingRow[];
  growth?: GrowthResult;
  payload?: PayloadCheckRow[];
  pgboss?: PgBossResult;
  /** Why the PostgreSQL part did not run (pg-boss cannot load on this Node). */
  pgbossSkipped?: string;
  redis?: RefusedRow[];
}

/** Issue 9: the payload check at add() costs at most twice JSON's round trip. */
const MAX_PAYLOAD_CHECK_RATIO = 2;
/** Issue 16 and the README: checking a payload costs no more than parsing the body it came in. */
const MAX_PAYLOAD_PARSE_RATIO = 1;

function scenarioName(name: string): string {
  const base = name.split('#')[0];
  const scenario = SCENARIOS[base];
  return scenario === undefined ? name : `(${scenario.id}${name.includes('#') ? "'" : ''})`;
}

interface CpuRow {
  comparison: Comparison;
  ratio: Spread;
  totalRatio: Spread;
  refUs: number;
  candUs: number;
  addedUs: number;
}

function cpuRows(results: Results): CpuRow[] {
  const rows: CpuRow[] = [];
  for (const comparison of CPU_COMPARISONS) {
    const samples = results.cpu?.find(
      (s) => s.reference === comparison.reference && s.candidate === comparison.candidate,
    );
    if (samples === undefined) continue;
    const added = pairwise(samples.referenceUs, samples.candidateUs, (ref, cand) => cand - ref);
    rows.push({
      comparison,
      ratio: spread(samples.sliceRatio),
      totalRatio: spread(samples.totalRatio),
      refUs: median(samples.referenceUs),
      candUs: median(samples.candidateUs),
      addedUs: median(added),
    });
  }
  return rows;
}

interface HttpRow {
  comparison: Comparison;
  cpu: Spread;
  rps: Spread;
  p50: Spread;
  p99: Spread;
}

function httpRows(results: Results): HttpRow[] {
  const rows: HttpRow[] = [];
  for (const comparison of HTTP_COMPARISONS) {
    const pairs = results.http?.find(
      (p) => p.reference === comparison.reference && p.candidate === comparison.candidate,
    );
    if (pairs === undefined) continue;
    const ref = pairs.referenceRuns;
    const cand = pairs.candidateRuns;
    rows.push({
      comparison,
      cpu: spread(pairwise(ref, cand, (r, c) => r.serverCpuUs / c.serverCpuUs)),
      rps: spread(pairwise(ref, cand, (r, c) => c.requestsPerSecond / r.requestsPerSecond)),
      p50: spread(pairwise(ref, cand, (r, c) => c.p50 / r.p50)),
      p99: spread(pairwise(ref, cand, (r, c) => c.p99 / r.p99)),
    });
  }
  return rows;
}

/** Every run of each server, from whichever comparisons it took part in. */
function runsByServer(results: Results): Map<string, HttpSample[]> {
  const runs = new Map<string, HttpSample[]>();
  for (const pairs of results.http ?? []) {
    for (const [name, samples] of [
      [pairs.reference, pairs.referenceRuns],
      [pairs.candidate, pairs.candidateRuns],
    ] as const) {
      runs.set(name, [...(runs.get(name) ?? []), ...samples]);
    }
  }
  return runs;
}

export function renderReport(results: Results): string {
  const { env, args } = results;
  const cpu = cpuRows(results);
  const http = httpRows(results);
  const out: string[] = [];
  out.push('# express-background-tasks: benchmark results', '');
  if (args.quick) {
    out.push(
      '**Smoke run (`--quick`)**: a few comparisons, all in one process, with tiny samples. It shows that ' +
        'every part runs; its numbers are not fit to judge the targets. Run `npm run bench` for that.',
      '',
    );
  }
  out.push(
    `- Date: ${env.date}`,
    `- Command: \`${env.command}\``,
    `- Node ${env.node} on ${env.platform}; CPU: ${env.cpus}`,
    `- Commit: ${env.commit}`,
    `- Load average (1 min) before / after: ${f2(env.loadBefore[0])} / ${f2(env.loadAfter[0])}`,
    `- Run time: ${f1(env.seconds)} s`,
    `- Settings: in-process ${args.rounds} pairs of ${args.batch} requests per app (after ${args.warmup} warm-up pairs); ` +
      `HTTP ${args.httpRounds} pairs of ${args.duration} s runs per comparison (${args.httpRounds + 1} pairs of ${args.duration * 2} s for the A/A control and 6 vs 5), ${args.connections} connections (after ${args.httpWarmup} s warm-up per server); ` +
      `queue ${int(args.tasks)} tasks; ${int(args.pending)} pending tasks; heap growth over ${int(args.requests)} requests; ` +
      `payload check ${args.payloadRuns} runs per mode; PostgreSQL ${args.pgRounds} rounds of ${args.pgLatency} latency samples, ` +
      `${int(args.pgTasks)} throughput tasks and ${args.pgCost} cost requests per variant`,
    '',
  );

  // Targets.
  const targets: string[][] = [];
  const control = cpu.find((row) => row.comparison.key === 'A/A');
  if (control !== undefined) {
    const ok = Math.abs(control.ratio.median - 1) <= CONTROL_TOLERANCE;
    targets.push([
      'A/A control, in process (sanity: identical apps)',
      withSpread4(control.ratio),
      `1.00 ± ${CONTROL_TOLERANCE.toFixed(2)}`,
      ok ? 'met' : '**MISSED: too noisy to read small differences**',
    ]);
  }
  for (const row of cpu) {
    if (row.comparison.minRatio === undefined) continue;
    targets.push([
      `(${row.comparison.key}) ${row.comparison.label}, in-process throughput ratio`,
      withSpread4(row.ratio),
      `≥ ${f2(row.comparison.minRatio)}`,
      pass(row.ratio.median >= row.comparison.minRatio),
    ]);
  }
  const slow = http.find((row) => row.comparison.key === '6 vs 5');
  const httpControl = http.find((row) => row.comparison.key === 'A/A');
  if (slow !== undefined) {
    const floor =
      httpControl === undefined
        ? ''
        : ` (noise floor: HTTP A/A p99 ratio ${withSpread(httpControl.p99)})`;
    targets.push([
      `p99 latency of (6) one 200 ms task / p99 of (5) one no-op task, HTTP${floor}`,
      withSpread4(slow.p99),
      `≤ ${f2(SLOW_TASK_MAX_P99_RATIO)}`,
      pass(slow.p99.median <= SLOW_TASK_MAX_P99_RATIO),
    ]);
  }
  if (results.growth !== undefined) {
    const { growth, requests } = results.growth;
    targets.push([
      `heap growth after ${int(requests)} requests with one task each (after GC, vs after warm-up)`,
      mb(growth),
      `≤ ${mb(MAX_HEAP_GROWTH)}`,
      pass(growth <= MAX_HEAP_GROWTH),
    ]);
  }
  for (const row of (results.pending ?? []).filter((r) => r.pending)) {
    targets.push([
      `heap per pending task, ${int(row.tasks)} behind concurrency 1: ${row.label}`,
      `${int(row.bytesPerTask)} B`,
      `≤ ${MAX_BYTES_PER_PENDING_TASK} B`,
      pass(row.bytesPerTask <= MAX_BYTES_PER_PENDING_TASK),
    ]);
  }
  for (const row of results.payload ?? []) {
    const byParse = row.reference === 'parse';
    const limit = byParse ? MAX_PAYLOAD_PARSE_RATIO : MAX_PAYLOAD_CHECK_RATIO;
    const modes: Array<[string, number[] | undefined]> = [
      ['no limit', row.noLimit],
      ['limit = its size', row.exactLimit],
      ['1 MiB limit (refused)', row.defaultLimit],
    ];
    for (const [mode, timings] of modes) {
      if (timings === undefined) continue;
      const ratio = spread(pairwise(row.referenceMs, timings, (ref, cand) => cand / ref));
      targets.push([
        `payload check vs ${byParse ? 'JSON.parse of its body' : 'JSON round trip'}, ${row.label} ` +
          `(${mb(row.jsonBytes)} of JSON), ${mode}: ` +
          `${f1(median(timings))} vs ${f1(median(row.referenceMs))} CPU ms`,
        withSpread4(ratio),
        `≤ ${f2(limit)}`,
        pass(ratio.median <= limit),
      ]);
    }
  }
  if (results.pgboss !== undefined) targets.push(...pgbossTargets(results.pgboss));
  if (targets.length > 0) {
    out.push('## Targets', '');
    out.push(
      table(['Check', 'Measured: median (interquartile range)', 'Target', 'Result'], targets),
      '',
    );
  }

  if (cpu.length > 0) {
    out.push('## Cost per request, in process (light-my-request, no sockets)', '');
    out.push(
      'Throughput ratio = CPU µs per request of the reference / of the candidate: 1.00 is "as fast", ' +
        'above is faster. Each pair (a batch of each app, run as interleaved 25-request slices) gives the ' +
        "median of its slice-by-slice ratios; shown is the median over the pairs, with the pairs' " +
        'interquartile range. "Batch totals" is the same from each batch\'s total CPU time: it follows the ' +
        'same median, but single slices that cost 4-10 times the usual (other tenants, a major GC) make it ' +
        'much noisier (see its A/A line). µs are the median slice cost per request; "added" is the median ' +
        'per-pair difference. Every row includes the injector itself, so ratios understate relative costs; ' +
        'the added µs do not.',
      '',
    );
    out.push(
      table(
        [
          'Comparison',
          'Ratio: median (IQR)',
          'Batch totals',
          'Reference µs/req',
          'Candidate µs/req',
          'Added µs/req',
          'Pairs',
        ],
        cpu.map((row) => [
          `${row.comparison.key}: ${row.comparison.label}`,
          withSpread(row.ratio),
          withSpread(row.totalRatio),
          f1(row.refUs),
          f1(row.candUs),
          f1(row.addedUs),
          String(row.ratio.n),
        ]),
      ),
      '',
    );
    const ours = cpu.find((row) => row.comparison.key === '5 vs 1');
    const fastify = cpu.find((row) => row.comparison.key === '8 vs 8r');
    if (ours !== undefined && fastify !== undefined) {
      out.push(
        `Fastify: its onResponse hook with the same task costs ${f1(fastify.addedUs)} µs per request over bare ` +
          `Fastify (ratio ${f2(fastify.ratio.median)}); the suite with one task costs ${f1(ours.addedUs)} µs ` +
          `over bare Express (ratio ${f2(ours.ratio.median)}). (5) vs (1) is the like-for-like pair: Fastify's ` +
          'hook needs no middleware, so bare Fastify vs Fastify + hook is "nothing" vs "the whole mechanism", ' +
          'as bare Express vs the suite with its middleware is ((5) vs (2) would leave out the middleware hop ' +
          'that the suite needs and Fastify does not). Compare the added µs rather than the ratios: a bare ' +
          'Fastify request is cheaper, so the same µs are a larger share of it.',
        '',
      );
    }
  }

  if (results.http !== undefined) {
    out.push('## Over HTTP (loopback, autocannon, one server process loaded at a time)', '');
    out.push(
      table(
        ['Server', 'Server CPU µs/req', 'req/s', 'p50 ms', 'p99 ms', 'Runs'],
        [...runsByServer(results)].map(([name, samples]) => [
          `${scenarioName(name)} ${SCENARIOS[name.split('#')[0]].title}`,
          f1(median(samples.map((s) => s.serverCpuUs))),
          int(median(samples.map((s) => s.requestsPerSecond))),
          f1(median(samples.map((s) => s.p50))),
          f1(median(samples.map((s) => s.p99))),
          String(samples.length),
        ]),
      ),
      '',
    );
    out.push(
      'Medians over all runs of each server. Comparisons below take ratios within each pair of runs (A B, ' +
        'then B A, ...), then the median and interquartile range over the pairs: server CPU per request ' +
        'reference / candidate and req/s candidate / reference (≥ 1 is as fast); latency candidate / reference ' +
        '(≤ 1 is as fast). The servers are saturated (autocannon ' +
        'sends as fast as they answer), so latency also follows throughput. autocannon reports whole ' +
        'milliseconds, so small latencies move in steps; "n/a" is a 0 ms reference. The A/A line is the noise floor.',
      '',
    );
    out.push(
      table(
        ['Comparison', 'Server CPU ratio', 'req/s ratio', 'p50 ratio', 'p99 ratio', 'Pairs'],
        http.map((row) => [
          `${row.comparison.key}: ${row.comparison.label}`,
          withSpread(row.cpu),
          withSpread(row.rps),
          withSpread(row.p50),
          withSpread(row.p99),
          String(row.rps.n),
        ]),
      ),
      '',
    );
  }

  if (results.queue !== undefined) {
    out.push('## Queue micro-benchmark (public API, fake minimal req/res, no HTTP)', '');
    out.push(
      table(
        ['Run', 'Tasks', 'Tasks/s', 'ns per task'],
        results.queue.map((row) => [
          row.label,
          int(row.tasks),
          int(row.tasksPerSecond),
          int(row.nsPerTask),
        ]),
      ),
      '',
    );
  }

  if (results.pending !== undefined || results.growth !== undefined) {
    out.push('## Memory', '');
    for (const row of results.pending ?? []) {
      out.push(
        `- Heap per task, ${row.label}: ${int(row.bytesPerTask)} bytes (${int(row.tasks)} tasks` +
          `${row.pending ? ' behind `concurrency: 1`' : ''}).`,
      );
    }
    if (results.growth !== undefined) {
      const g = results.growth;
      out.push(
        `- Heap after ${int(g.warmupRequests)} warm-up requests: ${mb(g.heapAfterWarmup)}; after ${int(g.requests)} more ` +
          `(each queuing one task, all drained), after GC: ${mb(g.heapAfter)}; growth ${mb(g.growth)}.`,
      );
    }
    out.push('');
  }

  if (results.pgboss !== undefined || results.pgbossSkipped !== undefined)
    out.push(...pgbossSection(results.pgboss, results.pgbossSkipped, env.node), '');

  if (results.redis !== undefined) {
    out.push(
      `## When Redis refuses (a worker or a producer alone, ${args.redisSeconds} s each, one job offered a second to the producer)`,
      '',
      table(
        [
          'Case',
          'CPU, % of a core',
          "Redis's CPU",
          'Redis commands/s',
          'error replies/s',
          'connections/s',
          "'error' events/s",
        ],
        results.redis.map((row) => [
          row.case,
          f1(row.cpuPercentOfOneCore),
          f1(row.redisCpuPercentOfOneCore),
          f1(row.redisCommandsPerSecond),
          f1(row.redisErrorRepliesPerSecond),
          f1(row.redisConnectionsPerSecond),
          f1(row.errorEventsPerSecond),
        ]),
      ),
      '',
    );
  }

  out.push('## How these were measured', '');
  out.push(
    '- Every app answers `GET /` with a small JSON body (the error path: a route throwing `createError(500)`). ' +
      "All processes run with NODE_ENV=production: Express's default handler then renders no stack into the body.",
    "- Logging: the suite's apps log to a winston logger (level `error`, JSON format) whose transport drops what it " +
      "is given: winston's own work is measured, a console's is not. Express's default handler logs each error with " +
      '`console.error(err)`; in (7r) that console formats into a null stream, the same arrangement; (7s) removes its ' +
      'logging altogether, the strictest reference, shown for information.',
    `- In process: light-my-request, requests one at a time; pairs of batches alternating which app goes first, each ` +
      'batch run as 25-request slices taking turns with the other app, with a minor GC before each slice outside ' +
      "the measured span, and background tasks and the injector's deferred callbacks drained inside it; a pair's " +
      'ratio is the median of its slice ratios (bench/cpu-compare.ts explains why). Each comparison runs in a ' +
      'fresh process.',
    '- HTTP: each server in its own process on 127.0.0.1 (free port), autocannon in the parent process; all servers ' +
      'are warmed up first; then each comparison loads its two servers in alternating pairs of runs (A B, B A, ...).',
    `- ${SLOW_CONCURRENCY_NOTE}.`,
    '- Queue micro-benchmark: the middleware driven with fake req/res objects whose response is already finished, ' +
      'so only the suite is timed; wall time per task, drained with `idle()` every 10,000 requests; the median of ' +
      'five equal parts.',
    '- Heap: child processes with --expose-gc; heap used after two forced GCs.',
    '- Payload check (bench/payload-check.ts): each run times the reference (JSON.parse(JSON.stringify(payload)), ' +
      "or JSON.parse of the payload's body) and copyPayload() without and with limits, in rotating order, each " +
      'after a forced GC; ratios are per run, in CPU time.',
    '- The machine is shared: other processes may run at the same time. The A/A control lines show how much of a ' +
      'difference is noise.',
    '',
  );
  return out.join('\n');
}
