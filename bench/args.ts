/**
 * The command-line flags of `npm run bench`, with their defaults. `--quick` shrinks every
 * part to a smoke run (well under a minute); explicit flags still win over it.
 */

export interface BenchArgs {
  /** Requests per in-process batch. */
  batch: number;
  /** In-process A/B pairs per comparison (each pair is one batch of each app). */
  rounds: number;
  /** In-process warm-up batches per app before measuring. */
  warmup: number;
  /** HTTP pairs of runs per comparison (A B, B A, ...). */
  httpRounds: number;
  /** autocannon connections. */
  connections: number;
  /** Seconds of load per HTTP run. */
  duration: number;
  /** Seconds of unmeasured load per server before the first HTTP round. */
  httpWarmup: number;
  /** No-op tasks pushed through the queue micro-benchmark. */
  tasks: number;
  /** Tasks kept waiting behind `concurrency: 1` for the heap-per-pending-task check. */
  pending: number;
  /** Requests for the heap-growth check. */
  requests: number;
  /** Timed runs of each payload-check mode. */
  payloadRuns: number;
  /** PostgreSQL part: rounds, each variant taking its turn in each. */
  pgRounds: number;
  /** PostgreSQL part: latency samples per variant and round. */
  pgLatency: number;
  /** PostgreSQL part: tasks per variant and round of the throughput run. */
  pgTasks: number;
  /** PostgreSQL part: requests per variant and round of the cost-in-the-request run. */
  pgCost: number;
  /** Seconds each case of the Redis part is measured. */
  redisSeconds: number;
  /** Parts to run: cpu, http, queue, heap, payload, pgboss, redis (default: all). */
  only: Set<string>;
  /** Where to write the results table (relative to the repository); '' writes nothing. */
  out: string;
  quick: boolean;
}

const FULL = {
  batch: 3000,
  rounds: 20,
  warmup: 2,
  httpRounds: 4,
  connections: 50,
  duration: 2,
  httpWarmup: 1,
  tasks: 1_000_000,
  pending: 100_000,
  requests: 200_000,
  payloadRuns: 9,
  pgRounds: 3,
  pgLatency: 40,
  pgTasks: 2000,
  pgCost: 100,
  redisSeconds: 10,
};

const QUICK: typeof FULL = {
  batch: 1000,
  rounds: 5,
  warmup: 1,
  httpRounds: 1,
  connections: 50,
  duration: 1,
  httpWarmup: 0.5,
  tasks: 100_000,
  pending: 20_000,
  requests: 10_000,
  payloadRuns: 3,
  pgRounds: 1,
  pgLatency: 8,
  pgTasks: 200,
  pgCost: 20,
  redisSeconds: 2,
};

const PARTS = ['cpu', 'http', 'queue', 'heap', 'payload', 'pgboss', 'redis'];

const HELP = `npm run bench -- [flags]

  --quick              smoke run (under ~30 s): fewer comparisons, small batches, one HTTP pair of 1 s runs
  --batch N            requests per in-process batch (default ${FULL.batch})
  --rounds N           in-process A/B pairs per comparison (default ${FULL.rounds})
  --warmup N           in-process warm-up batches per app (default ${FULL.warmup})
  --http-rounds N      HTTP pairs of runs per comparison (default ${FULL.httpRounds})
  --connections N      autocannon connections (default ${FULL.connections})
  --duration S         seconds of load per HTTP run (default ${FULL.duration})
  --http-warmup S      seconds of unmeasured load per server first (default ${FULL.httpWarmup})
  --tasks N            tasks for the queue micro-benchmark (default ${FULL.tasks})
  --pending N          tasks waiting behind concurrency 1 for the heap check (default ${FULL.pending})
  --requests N         requests for the heap-growth check (default ${FULL.requests})
  --payload-runs N     timed runs of each payload-check mode (default ${FULL.payloadRuns})
  --pg-rounds N        PostgreSQL part (Node 22.12+): rounds of every variant (default ${FULL.pgRounds})
  --pg-latency N       latency samples per variant and round (default ${FULL.pgLatency})
  --pg-tasks N         throughput tasks per variant and round (default ${FULL.pgTasks})
  --pg-cost N          cost-in-the-request requests per variant and round (default ${FULL.pgCost})
  --redis-seconds S    Redis part: seconds each refusal case is measured (default ${FULL.redisSeconds})
  --only a,b           parts to run: ${PARTS.join(', ')} (default: all)
  --out FILE           results file (default bench/RESULTS.md; --out '' writes none)
`;

export function parseArgs(argv: string[]): BenchArgs {
  const quick = argv.includes('--quick');
  const values: typeof FULL = { ...(quick ? QUICK : FULL) };
  let only = new Set(PARTS);
  let out = quick ? '' : 'bench/RESULTS.md';
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--quick') continue;
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(HELP);
      process.exit(0);
    }
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value\n\n${HELP}`);
    if (flag === '--only') {
      only = new Set(value.split(','));
      for (const part of only) if (!PARTS.includes(part)) throw new Error(`unknown part "${part}"`);
      continue;
    }
    if (flag === '--out') {
      out = value;
      continue;
    }
    const key = flag.replace(/^--/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
    if (!(key in values)) throw new Error(`unknown flag ${flag}\n\n${HELP}`);
    const number = Number(value);
    if (!Number.isFinite(number) || number <= 0)
      throw new Error(`${flag} must be a positive number`);
    values[key as keyof typeof FULL] = number;
  }
  return { ...values, only, out, quick };
}
