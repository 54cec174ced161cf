/**
 * The PostgreSQL part's report (bench/pgboss.ts measures): its rows of the targets table, and its
 * section, with the latency, throughput and cost tables and how they were measured.
 */
import { f2, f3, f4, int, pass, table, withSpread, withSpread4 } from './format';
import type { PgBossResult } from './pgboss';
import { median, pairwise, quantile, spread, type Spread } from './stats';

/** Issue 15: the fast path's p50 latency against a LISTEN/NOTIFY worker's, and a polling worker's. */
const MAX_FAST_TO_NOTIFY_P50 = 0.1;
const MAX_FAST_TO_POLL_P50 = 0.01;
/** Issue 15: the fast path's tasks per second against pg-boss's send in a transaction plus work(). */
const MIN_FAST_TO_PGBOSS_THROUGHPUT = 0.9;

/** The part's rows of the targets table. */
export function pgbossTargets(pg: PgBossResult): string[][] {
  const figures = pgbossFigures(pg);
  const rows: string[][] = [];
  for (const [versus, target] of [
    ['notify', MAX_FAST_TO_NOTIFY_P50],
    ['poll', MAX_FAST_TO_POLL_P50],
  ] as const) {
    const ratio = figures.p50Ratio[versus];
    rows.push([
      `PostgreSQL: p50 latency, commit to task start, of the fast path / of a pg-boss worker ` +
        `${versus === 'notify' ? 'woken by LISTEN/NOTIFY' : 'polling every 2 s'}: ` +
        `${f2(figures.latency.fast.p50)} vs ${f2(figures.latency[versus].p50)} ms`,
      `${f4(ratio.all)} (rounds ${f4(ratio.low)}–${f4(ratio.high)})`,
      `≤ ${f2(target)}`,
      pass(ratio.all <= target),
    ]);
  }
  rows.push([
    "PostgreSQL: tasks per second end to end, fast path / pg-boss's send in the transaction + work(): " +
      `${int(median(pg.throughput.fast))} vs ${int(median(pg.throughput.pgboss))}`,
    withSpread4(figures.throughputRatio),
    `≥ ${f2(MIN_FAST_TO_PGBOSS_THROUGHPUT)}`,
    pass(figures.throughputRatio.median >= MIN_FAST_TO_PGBOSS_THROUGHPUT),
  ]);
  return rows;
}

/** The part's section: its tables and how they were measured, or why it did not run. */
export function pgbossSection(
  pg: PgBossResult | undefined,
  skipped: string | undefined,
  node: string,
): string[] {
  const title = '## PostgreSQL: the fast path against pg-boss';
  if (pg === undefined) {
    return [
      title,
      '',
      `Not run on Node ${node.replace(/^v/, '')}: ${skipped} Run it on Node 22 or 24: ` +
        '`npm run bench -- --only pgboss`.',
    ];
  }
  const figures = pgbossFigures(pg);
  const rounds = pg.throughput.fast.length;
  const ms = (values: number[]) => withSpread(spread(values));
  const cost = pg.cost;
  const added = (variant: keyof PgBossResult['cost'], field: 'stepMs' | 'requestMs') =>
    f3(median(cost[variant][field]) - median(cost.bareInsert[field]));
  return [
    title,
    '',
    `Node ${pg.node}, PostgreSQL ${pg.postgres} on loopback (fsync off, as in the tests), ${rounds} rounds; ` +
      'the web app, the workers and the client in one process; every pool 10 connections, every runner 16 tasks at once.',
    '',
    table(
      ['Latency, commit to task start', 'p50 ms', 'p99 ms', 'Samples'],
      (
        [
          [
            "fast path: addInTransaction(), run here after the response on its commit's notification",
            'fast',
          ],
          ["the same tasks, from the response's end", 'fastFromResponse'],
          [
            "the fast path's requests: the commit to the response's end (`finish`)",
            'responseEnded',
          ],
          ["the fast path's requests: the commit to its notification's arrival here", 'notified'],
          ['pg-boss send() in the transaction, work() woken by LISTEN/NOTIFY', 'notify'],
          [
            "pg-boss send() in the transaction, work() polling every 2 s (pg-boss's default)",
            'poll',
          ],
        ] as const
      ).map(([label, key]) => [
        label,
        f2(figures.latency[key].p50),
        f2(figures.latency[key].p99),
        String(figures.latency[key].n),
      ]),
    ),
    '',
    table(
      ['Throughput, end to end', 'Tasks/s, median', 'Each round', 'Ratio to pg-boss: median (IQR)'],
      [
        [
          'fast path',
          int(median(pg.throughput.fast)),
          pg.throughput.fast.map(int).join(', '),
          withSpread(figures.throughputRatio),
        ],
        [
          'pg-boss send() in the transaction + work() (LISTEN/NOTIFY)',
          int(median(pg.throughput.pgboss)),
          pg.throughput.pgboss.map(int).join(', '),
          '1',
        ],
      ],
    ),
    '',
    table(
      [
        'Cost in the request',
        'The step in the transaction, ms: median (IQR)',
        'Added over a bare INSERT, ms',
        'Whole request on the server, ms: median (IQR)',
        'Added, ms',
        'Requests',
      ],
      (
        [
          ['addInTransaction()', 'addInTransaction'],
          ["pg-boss's own send({ db })", 'pgbossSend'],
          ['a bare INSERT of the same data', 'bareInsert'],
        ] as const
      ).map(([label, key]) => [
        label,
        ms(cost[key].stepMs),
        key === 'bareInsert' ? '' : added(key, 'stepMs'),
        ms(cost[key].requestMs),
        key === 'bareInsert' ? '' : added(key, 'requestMs'),
        String(cost[key].stepMs.length),
      ]),
    ),
    '',
    `Claims the fast path made (a task whose commit no notification had proven within commitWaitMs, or ` +
      `whose transaction had spent too much of its lease): ${total(pg.fastClaims.latency)} of ` +
      `${figures.latency.fast.n} tasks in the latency runs, ${total(pg.fastClaims.throughput)} of ` +
      `${pg.throughput.fast.length * pg.throughputTasks} in the throughput runs.`,
    '',
    'Latency: requests arrive at random (a Poisson process, 4 a second) for every variant; each sample is one ' +
      "task's start minus its transaction's commit, on one clock. Throughput: 16 clients, each sending its next " +
      'request when its last is answered, from the first request until the database has every job completed (the fast ' +
      "path's write-backs, or pg-boss's completions); ratios are per round. Cost: one request at a time, the variants " +
      "taking turns, each after the previous one's task has ended; the step is the one call in the transaction, " +
      "between the order's INSERT and the COMMIT; the whole request is timed on the server, from its arrival to " +
      "its response's `finish` (this process's client would also count the claim that follows the response).",
  ];
}

interface PgBossFigures {
  latency: Record<
    'fast' | 'fastFromResponse' | 'responseEnded' | 'notified' | 'poll' | 'notify',
    { p50: number; p99: number; n: number }
  >;
  /** The fast path's p50 over each worker's: from all samples, and the lowest and highest round. */
  p50Ratio: Record<'poll' | 'notify', { all: number; low: number; high: number }>;
  /** The fast path's tasks per second over pg-boss's, round by round. */
  throughputRatio: Spread;
}

function pgbossFigures(pg: PgBossResult): PgBossFigures {
  const of = (rounds: number[][]) => {
    const all = rounds.flat();
    return { p50: quantile(all, 0.5), p99: quantile(all, 0.99), n: all.length };
  };
  const latency = {
    fast: of(pg.latency.fast),
    fastFromResponse: of(pg.fastFromResponse),
    responseEnded: of(pg.fastSteps.responseEnded),
    notified: of(pg.fastSteps.notified),
    poll: of(pg.latency.poll),
    notify: of(pg.latency.notify),
  };
  const ratioTo = (versus: 'poll' | 'notify') => {
    const byRound = pg.latency.fast.map(
      (samples, round) => median(samples) / median(pg.latency[versus][round]),
    );
    return {
      all: latency.fast.p50 / latency[versus].p50,
      low: Math.min(...byRound),
      high: Math.max(...byRound),
    };
  };
  return {
    latency,
    p50Ratio: { poll: ratioTo('poll'), notify: ratioTo('notify') },
    throughputRatio: spread(
      pairwise(pg.throughput.pgboss, pg.throughput.fast, (ref, cand) => cand / ref),
    ),
  };
}

function total(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0);
}
