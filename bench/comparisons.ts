/**
 * What is compared with what, and the targets of issue 4. A ratio is always "candidate vs
 * reference", expressed so that 1.00 means "as fast" and more is faster:
 *
 *   in process:  CPU µs per request of the reference / that of the candidate
 *                (= requests per CPU-second of the candidate / those of the reference)
 *   over HTTP:   requests/s of the candidate / those of the reference; latency ratios are
 *                candidate / reference, so there 1.00 is "as fast" and less is faster.
 */

export interface Comparison {
  key: string;
  label: string;
  reference: string;
  candidate: string;
  /** The smallest acceptable throughput ratio, when issue 4 sets one. */
  minRatio?: number;
  /** Part of a --quick run. */
  quick?: boolean;
  /**
   * HTTP only: one more pair, of runs twice as long. p99 turns on the few GC pauses a run
   * happens to contain, so a latency target and its A/A noise floor get longer samples.
   */
  long?: boolean;
}

/** In-process comparisons (bench/cpu-compare.ts). */
export const CPU_COMPARISONS: Comparison[] = [
  {
    key: 'A/A',
    label: 'control: (1) bare Express vs an identical app',
    reference: 'bare',
    candidate: 'bare',
    quick: true,
  },
  {
    key: '2 vs 1',
    label: 'one no-op middleware vs bare Express',
    reference: 'bare',
    candidate: 'noopMiddleware',
  },
  {
    key: '3 vs 2',
    label: 'suite mounted, no task vs one no-op middleware',
    reference: 'noopMiddleware',
    candidate: 'suiteIdle',
    minRatio: 0.98,
    quick: true,
  },
  {
    key: '5 vs 4',
    label: 'suite, one no-op task vs hand-written onFinished + then/catch',
    reference: 'handWritten',
    candidate: 'suiteTask',
    minRatio: 0.95,
    quick: true,
  },
  {
    key: '5 vs 1',
    label: 'suite, one no-op task vs bare Express',
    reference: 'bare',
    candidate: 'suiteTask',
  },
  {
    key: '7 vs 7r',
    label: "error path: httpErrorHandler + notifier vs Express's default handler",
    reference: 'expressError',
    candidate: 'suiteError',
    minRatio: 1.0,
    quick: true,
  },
  {
    key: '7 vs 7s',
    label: "error path vs Express's default handler with its logging removed",
    reference: 'expressErrorUnlogged',
    candidate: 'suiteError',
  },
  {
    key: '8 vs 8r',
    label: 'Fastify onResponse hook + no-op task vs bare Fastify',
    reference: 'fastifyBare',
    candidate: 'fastifyHook',
  },
  {
    // Never in --quick: that runs every comparison in one process, and the SDK it registers
    // would then trace the other scenarios too.
    key: '9 vs 9r',
    label: 'OpenTelemetry SDK registered: suite, one task vs hand-written span + histogram point',
    reference: 'handWrittenOtel',
    candidate: 'suiteTaskOtel',
    minRatio: 0.95,
  },
];

/** The A/A control must come out within this of 1.00, or the run is too noisy to read 2%. */
export const CONTROL_TOLERANCE = 0.03;

/** HTTP comparisons (bench/http-load.ts): throughput and latency ratios of the same pairs of runs. */
export const HTTP_COMPARISONS: Comparison[] = [
  {
    key: 'A/A',
    label: 'control: bare Express vs a second bare Express server',
    reference: 'bare',
    candidate: 'bare#2',
    long: true,
  },
  {
    key: '2 vs 1',
    label: 'one no-op middleware vs bare Express',
    reference: 'bare',
    candidate: 'noopMiddleware',
  },
  {
    key: '3 vs 2',
    label: 'suite mounted, no task vs one no-op middleware',
    reference: 'noopMiddleware',
    candidate: 'suiteIdle',
  },
  {
    key: '5 vs 4',
    label: 'suite, one no-op task vs hand-written',
    reference: 'handWritten',
    candidate: 'suiteTask',
  },
  {
    key: '6 vs 5',
    label: 'suite, one 200 ms task vs one no-op task',
    reference: 'suiteTask',
    candidate: 'suiteSlowTask',
    long: true,
    quick: true,
  },
  {
    key: '4s vs 4',
    label: 'hand-written, one 200 ms task vs one no-op task (what the slow task itself costs)',
    reference: 'handWritten',
    candidate: 'handWrittenSlowTask',
  },
  {
    key: '6 vs 4s',
    label: 'suite vs hand-written, both with one 200 ms task',
    reference: 'handWrittenSlowTask',
    candidate: 'suiteSlowTask',
  },
  {
    key: '5 vs 1',
    label: 'suite, one no-op task vs bare Express',
    reference: 'bare',
    candidate: 'suiteTask',
  },
  {
    key: '7 vs 7r',
    label: "error path vs Express's default handler",
    reference: 'expressError',
    candidate: 'suiteError',
  },
  {
    key: '8 vs 8r',
    label: 'Fastify onResponse hook vs bare Fastify',
    reference: 'fastifyBare',
    candidate: 'fastifyHook',
  },
];

/** p99 of (6) may be at most this times p99 of (5). */
export const SLOW_TASK_MAX_P99_RATIO = 1.1;
/** Heap growth after the heap-growth run, bytes. */
export const MAX_HEAP_GROWTH = 10 * 1024 * 1024;
/** Heap per pending task, bytes. */
export const MAX_BYTES_PER_PENDING_TASK = 1024;
