/**
 * Log delivery under faults, each case in a real child process, counting what actually reached
 * the File transport's file, the in-memory transport, the stdout pipe and the real stderr pipe:
 * - it never crashes: a transport or format that throws, fails asynchronously, is destroyed, or
 *   calls back with an error, at any point, sync or in a later turn;
 * - it never freezes the server: the stderr fallback spends at most MAX_STDERR_MS_PER_TURN of a
 *   turn writing, whatever the reader does;
 * - it never loses a record without counting it: each one is delivered exactly once (to its
 *   transport, or to stderr for a transport that could not take it), or counted as dropped;
 * - it never leaks what the app's format removes: a record on stderr is formatted by the logger's
 *   own format, or minimal when that format throws;
 * - `closeLogger()` ends winston only once it has handed every record over, within its timeout;
 * - `drain()`'s lines have a total deadline.
 */
import fc from 'fast-check';
import { LOG_MESSAGES } from '../lib';
import { MAX_STDERR_MS_PER_TURN } from '../lib/stderr';
import { DRAIN_LINES_GRACE_MS } from '../lib/runner';
import { idCounts, runCase, type Case, type Readers, type Run } from './support/log-delivery';

/** A write may start just before the budget runs out: one write's worth of slack on a loaded machine. */
const TURN_BOUND_MS = MAX_STDERR_MS_PER_TURN + 25;
/** How late a timer may fire on a loaded 2-core machine running the rest of the suite. */
const TIMER_SLACK_MS = 1_000;
/** The longest turn allowed where the library's work on one record is all a turn does (GC included). */
const LOOP_BOUND_MS = 250;
/** The property's seed: PROPERTY_SEED to replay one, else a new one, printed. */
const SEED = Number(process.env.PROPERTY_SEED ?? Date.now() % 2 ** 31);

interface Ledger {
  /** Distinct records that reached the transport, and stderr. */
  delivered: number;
  onStderr: number;
  /** Records that arrived twice or more (counted once per extra copy), and records that arrived nowhere. */
  twice: number;
  missing: number;
  dropped: number;
}

/** Where each of the case's records went, for one transport (the only one, or the one named). */
function ledger(run: Run, spec: Case, transport = spec.transports[0]): Ledger {
  const delivered =
    transport === 'file'
      ? idCounts(run.file)
      : transport === 'console'
        ? idCounts(run.stdout)
        : idCounts((run.result.delivered[transport] ?? []).map((task) => ({ task })));
  const onStderr = idCounts(run.stderr);
  let twice = 0;
  let missing = 0;
  for (let i = 0; i < spec.records; i++) {
    const copies = (delivered.get(`r${i}`) ?? 0) + (onStderr.get(`r${i}`) ?? 0);
    if (copies === 0) missing++;
    twice += Math.max(0, copies - 1);
  }
  return {
    delivered: delivered.size,
    onStderr: onStderr.size,
    twice,
    missing,
    dropped: run.result.stats.logRecordsDropped,
  };
}

/** Every record delivered exactly once or counted as dropped, and the process ended well. */
function expectAccounted(run: Run, spec: Case, transport?: Case['transports'][number]): Ledger {
  const counts = ledger(run, spec, transport);
  expect(run.exitCode).toBe(0);
  expect(run.stderrText).toEqual([]);
  // Records a transport was given and had not acknowledged at a close that timed out are in
  // doubt: it may have written them, or not (they are counted, and not written twice).
  const uncounted = counts.missing - counts.dropped;
  expect({ twice: counts.twice, uncounted: Math.max(0, uncounted - run.result.inDoubt) }).toEqual({
    twice: 0,
    uncounted: 0,
  });
  expect(uncounted).toBeGreaterThanOrEqual(0);
  return counts;
}

const notices = (run: Run, message: string) => run.stderr.filter((r) => r.message === message);

const base = { size: 300, pacing: 'sync', through: 'safeLog' } as const;

describe('closeLogger() ends winston only once it has handed every record to its transports', () => {
  const shapes = [300, 2_000].flatMap((records) =>
    [300, 4_096].flatMap((size) =>
      (['sync', 'microtask', 'immediate'] as const).map((pacing) => ({ records, size, pacing })),
    ),
  );
  test(`a busy File transport gets every record of each of ${shapes.length} bursts (300 or 2,000 records of 300 B or 4 KB; sync, microtask or setImmediate pacing), and nothing goes to stderr`, async () => {
    const runs = await inBatches(shapes, 4, (shape) =>
      runCase({ ...base, ...shape, transports: ['file'], warmUpMs: 300 }),
    );
    runs.forEach((run, i) => {
      const spec = { ...base, ...shapes[i], transports: ['file'] } as Case;
      expect({ shape: shapes[i], ...expectAccounted(run, spec) }).toMatchObject({
        delivered: spec.records,
        onStderr: 0,
        dropped: 0,
      });
      expect(run.result.closed).toBe(true);
    });
  }, 60_000);

  test('a logger the library was never given is guarded by closeLogger(): no crash, every record in the file', async () => {
    // winston alone dies here with an uncaught "write after end" from the records it still held.
    const spec: Case = {
      ...base,
      records: 2_000,
      transports: ['file'],
      warmUpMs: 300,
      unguarded: true,
    };
    const run = await runCase(spec);
    expect(expectAccounted(run, spec)).toMatchObject({ delivered: 2_000, onStderr: 0 });
    expect(run.result.closed).toBe(true);
  }, 30_000);

  test('a transport that never finishes: false after timeoutMs; every record it held is on stderr, but the one it was given and never acknowledged, which is in doubt; one line says so', async () => {
    const spec: Case = { ...base, records: 300, transports: ['stuck'], closeTimeoutMs: 1_000 };
    const run = await runCase(spec);
    expect(expectAccounted(run, spec)).toMatchObject({ delivered: 0, onStderr: 299, dropped: 0 });
    expect(run.result.inDoubt).toBe(1);
    expect(run.result.closed).toBe(false);
    expect(run.result.closeMs).toBeLessThan(1_000 + TIMER_SLACK_MS);
    expect(notices(run, LOG_MESSAGES.loggerCloseTimedOut)).toEqual([
      expect.objectContaining({ timeoutMs: 1_000 }),
    ]);
  }, 30_000);
});

describe('a transport that fails never crashes the process, and the records it fails on go to stderr', () => {
  test('log() throws on every 3rd record, calling back a turn later otherwise: 5 failing tasks, each line once, in the transport or on stderr', async () => {
    // Today: the throw comes from a later turn, outside any frame of the library, and the process exits 1.
    const spec: Case = { ...base, records: 5, through: 'tasks', transports: ['throws'], every: 3 };
    const run = await runCase(spec);
    expect(expectAccounted(run, spec)).toMatchObject({ delivered: 4, onStderr: 1 });
    expect(run.stderr.find((r) => r.task === 'r2')).toMatchObject({
      message: LOG_MESSAGES.taskFailed,
    });
    expect(notices(run, LOG_MESSAGES.loggerFailed)).toEqual([
      expect.objectContaining({
        forGood: false,
        loggerError: expect.objectContaining({ message: 'transport threw on record 3' }),
      }),
    ]);
  }, 30_000);

  test.each([
    ['emits an error', 'emits-error'],
    ['destroys itself with an error', 'destroys'],
  ] as const)(
    'a transport that %s at its 20th of 320 records: the 19 before stay delivered, every later one is on stderr, once',
    async (_what, kind) => {
      const spec: Case = { ...base, records: 320, transports: [kind], at: 20 };
      const run = await runCase(spec);
      const counts = expectAccounted(run, spec);
      expect(counts.delivered).toBeGreaterThanOrEqual(19);
      expect(counts.delivered + counts.onStderr).toBe(320);
      expect(counts.dropped).toBe(0);
      expect(notices(run, LOG_MESSAGES.loggerFailed)).toEqual([
        expect.objectContaining({
          forGood: true,
          loggerError: expect.objectContaining({ message: 'connection lost' }),
        }),
      ]);
    },
    30_000,
  );

  test("the only transport destroyed on the 1st of 2 records, logged an immediate apart: the 2nd, logged before winston pipes it again, is on stderr through the app's format, never as winston's raw 'no transports' line", async () => {
    // winston prints a record logged while no transport is piped, unformatted, with its secret.
    const spec: Case = {
      ...base,
      size: 10,
      records: 2,
      pacing: 'immediate',
      transports: ['destroys'],
      at: 1,
      format: 'redacting',
    };
    const run = await runCase(spec);
    expect(expectAccounted(run, spec)).toMatchObject({ dropped: 0 });
    expect(run.stderrText).toEqual([]);
    expect(JSON.stringify(run.stderr)).not.toContain('SECRET');
  }, 30_000);

  test('callback(err) on every 20th record, batched by winston-transport (where it swallows the error): those 16 are on stderr', async () => {
    const spec: Case = { ...base, records: 320, transports: ['callback-error'], every: 20 };
    const run = await runCase(spec);
    expect(expectAccounted(run, spec)).toMatchObject({ delivered: 304, onStderr: 16, dropped: 0 });
  }, 30_000);

  test("a transport's own format that throws on every 7th record: those go to stderr as minimal records, the rest to the transport", async () => {
    const spec: Case = { ...base, records: 70, transports: ['format-throws'], every: 7 };
    const run = await runCase(spec);
    expect(expectAccounted(run, spec)).toMatchObject({ delivered: 60, onStderr: 10 });
    const minimal = run.stderr.filter((r) => typeof r.task === 'string');
    for (const record of minimal)
      expect(Object.keys(record).sort()).toEqual(['level', 'message', 'task']);
    expect(JSON.stringify(run.stderr)).not.toContain('SECRET');
  }, 30_000);

  test('two transports, one of which throws on every 3rd record: the good one gets all 300, stderr only the ones the other failed on', async () => {
    const spec: Case = {
      ...base,
      records: 300,
      transports: ['file', 'throws'],
      every: 3,
      warmUpMs: 300,
    };
    const run = await runCase(spec);
    expect(idCounts(run.file).size).toBe(300);
    expect(run.file).toHaveLength(300); // each once
    expect(expectAccounted(run, spec, 'throws')).toMatchObject({ delivered: 200, onStderr: 100 });
  }, 30_000);
});

describe(`the fallback never holds the event loop for more than ${MAX_STDERR_MS_PER_TURN} ms a turn`, () => {
  test.each([
    ['a slow reader (4 KB every 100 ms)', { stderr: 'slow', slowBytes: 4_096, slowEveryMs: 100 }],
    ['a stopped reader', { stderr: 'stopped' }],
  ] as Array<[string, Readers]>)(
    '200 failures in one burst behind a stuck logger, with %s: no long stall, and each line is on stderr or counted',
    async (_reader, readers) => {
      // Today the synchronous fallback waits for the reader: 200 failures froze a server for 45 s.
      const spec: Case = {
        ...base,
        size: 2_000,
        records: 200,
        through: 'tasks',
        transports: ['stuck'],
        closeTimeoutMs: 1_500,
      };
      const run = await runCase(spec, readers);
      expectAccounted(run, spec);
      expect(run.result.maxStderrTurnMs).toBeLessThanOrEqual(TURN_BOUND_MS);
      expect(run.result.maxLoopDelayMs).toBeLessThan(500);
      expect(run.result.closeMs).toBeLessThan(1_500 + TIMER_SLACK_MS);
    },
    30_000,
  );
});

describe('a record stderr cannot take is counted, and the count is reported', () => {
  test('1,000 failures behind a stuck logger with a stopped stderr reader: what is not on stderr is in stats().logRecordsDropped', async () => {
    // Today a 10 s "quiet spell" skips them, uncounted: 953 of 1,000 lost.
    const spec: Case = {
      ...base,
      size: 2_000,
      records: 1_000,
      transports: ['stuck'],
      closeTimeoutMs: 1_500,
    };
    const run = await runCase(spec, { stderr: 'stopped' });
    const counts = expectAccounted(run, spec);
    expect(counts.dropped).toBeGreaterThan(0);
    expect(counts.onStderr + counts.dropped + run.result.inDoubt).toBe(1_000);
  }, 30_000);

  test('once the reader reads again, "log records dropped" lines give the count, as soon as stderr has taken what waited', async () => {
    // More than the line for a stuck logger (10,000) and stderr's buffer (8 MiB) together hold.
    const spec: Case = {
      ...base,
      size: 2_000,
      records: 20_000,
      transports: ['stuck'],
      closeTimeoutMs: 1_500,
      signalBurstDone: true,
    };
    const run = await runCase(spec, { stderr: 'resumed' });
    const counts = expectAccounted(run, spec);
    expect(counts.dropped).toBeGreaterThan(0);
    const reports = notices(run, LOG_MESSAGES.logRecordsDropped);
    const reported = reports.reduce((sum, r) => sum + (r.dropped as number), 0);
    expect(reports.length).toBeGreaterThanOrEqual(1);
    expect(reported).toBe(counts.dropped);
    // Told as soon as stderr had taken what waited, not held for the next record or the close.
    expect(run.result.unreportedOnceRead).toBe(0);
  }, 30_000);
});

describe("drain()'s lines have a total deadline", () => {
  test(`a transport that never calls back, 60 abandoned tasks: drain({ timeoutMs: 100 }) resolves well within ${DRAIN_LINES_GRACE_MS} ms more, and every line reaches stderr`, async () => {
    // Today it waits a second per line: 60.2 s.
    const spec: Case = {
      ...base,
      records: 60,
      through: 'tasks',
      transports: ['stuck'],
      drainTimeoutMs: 100,
      closeTimeoutMs: 1_000,
    };
    const run = await runCase(spec);
    expect(expectAccounted(run, spec)).toMatchObject({
      onStderr: 60 - run.result.inDoubt,
      dropped: 0,
    });
    expect(run.result.drain).toMatchObject({ completed: false, abandoned: 60 });
    expect(run.result.drain!.ms).toBeLessThan(100 + DRAIN_LINES_GRACE_MS);
  }, 30_000);

  test(`a transport that takes a line every 5 ms, 2,000 abandoned tasks: drain() ends by its timeout plus ${DRAIN_LINES_GRACE_MS} ms, and the lines it could not wait for are on stderr`, async () => {
    const spec: Case = {
      ...base,
      records: 2_000,
      through: 'tasks',
      transports: ['slow'],
      drainTimeoutMs: 100,
      closeTimeoutMs: 10_000,
    };
    const run = await runCase(spec);
    const counts = expectAccounted(run, spec);
    expect(counts).toMatchObject({ dropped: 0 });
    expect(counts.delivered).toBeGreaterThan(500);
    expect(counts.onStderr).toBeGreaterThan(0);
    expect(run.result.drain!.ms).toBeLessThan(100 + DRAIN_LINES_GRACE_MS + 500);
    expect(run.result.closed).toBe(true);
  }, 40_000);
});

describe("what the app's format removes is removed on stderr too", () => {
  test('200 failures behind a stuck logger whose format redacts token= and adds service: stderr has the redacted URL, the service and a timestamp, and never the secret', async () => {
    // Today all 84 records that spilled carried token=SECRET-123, with no service and no timestamp.
    const spec: Case = {
      ...base,
      records: 200,
      through: 'tasks',
      transports: ['stuck'],
      format: 'redacting',
      closeTimeoutMs: 1_000,
    };
    const run = await runCase(spec);
    expect(expectAccounted(run, spec)).toMatchObject({ onStderr: 200 - run.result.inDoubt });
    const failures = run.stderr.filter((r) => r.message === LOG_MESSAGES.taskFailed);
    expect(failures).toHaveLength(200 - run.result.inDoubt);
    for (const record of failures) {
      expect(record).toMatchObject({
        service: 'shop',
        url: '/?token=[redacted]',
        timestamp: expect.any(String),
      });
    }
    expect(JSON.stringify(run.stderr)).not.toContain('SECRET');
  }, 30_000);

  test('a logger format that throws: each record is on stderr, minimal (level, message, task, request id), with no URL and no error text', async () => {
    const spec: Case = {
      ...base,
      records: 3,
      through: 'tasks',
      transports: ['late'],
      format: 'throwing',
    };
    const run = await runCase(spec);
    expect(expectAccounted(run, spec)).toMatchObject({ delivered: 0, onStderr: 3 });
    const failures = run.stderr.filter((r) => r.message === LOG_MESSAGES.taskFailed);
    for (const record of failures)
      expect(Object.keys(record).sort()).toEqual(['level', 'message', 'requestId', 'task']);
    expect(JSON.stringify(run.stderr)).not.toMatch(/SECRET|\/throw|cannot format \//);
    expect(notices(run, LOG_MESSAGES.loggerFormatFailed)).toEqual([
      expect.objectContaining({ loggerError: { name: 'Error' } }),
    ]);
  }, 30_000);
});

describe('property: any burst, any transport, any stderr reader', () => {
  const transports = ['file', 'console', 'late', 'throws', 'emits-error', 'destroys'] as const;
  test('every record is delivered exactly once or counted as dropped; no crash; no long stall; closeLogger() keeps its timeout', async () => {
    console.log(`log-delivery property: seed ${SEED} (PROPERTY_SEED=${SEED} replays it)`);
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          records: fc.integer({ min: 1, max: 5_000 }),
          size: fc.integer({ min: 10, max: 65_536 }),
          pacing: fc.constantFrom('sync', 'microtask', 'immediate'),
          transport: fc.constantFrom(...transports),
          every: fc.integer({ min: 2, max: 50 }),
          at: fc.integer({ min: 1, max: 200 }),
          stderr: fc.constantFrom('fast', 'slow', 'stopped'),
        }),
        async (drawn) => {
          // At most 8 MB a run, so that it takes seconds.
          const records = Math.max(1, Math.min(drawn.records, Math.floor(8_000_000 / drawn.size)));
          const spec: Case = {
            records,
            size: drawn.size,
            pacing: drawn.pacing,
            through: 'safeLog',
            transports: [drawn.transport],
            every: drawn.every,
            at: drawn.at,
            closeTimeoutMs: 2_000,
            ...(drawn.transport === 'file' && { warmUpMs: 100 }),
          };
          const readers: Readers = {
            stderr: drawn.stderr,
            ...(drawn.transport === 'console' && {
              stdout: 'slow',
              slowBytes: 65_536,
              slowEveryMs: 10,
            }),
          };
          const run = await runCase(spec, readers);
          expectAccounted(run, spec);
          // One record at a time per transport: at most the one it was given is in doubt.
          expect(run.result.inDoubt).toBeLessThanOrEqual(1);
          expect(run.result.maxStderrTurnMs).toBeLessThanOrEqual(TURN_BOUND_MS);
          // A record an immediate apart: what holds a turn is the library's work on it alone.
          if (spec.pacing === 'immediate')
            expect(run.result.maxLoopDelayMs).toBeLessThan(LOOP_BOUND_MS);
          expect(run.result.closeMs).toBeLessThan(2_000 + TIMER_SLACK_MS);
        },
      ),
      { numRuns: Number(process.env.PROPERTY_RUNS ?? 10), seed: SEED },
    );
  }, 600_000);
});

/** Runs `run` over `items`, `size` at a time. */
async function inBatches<T, R>(
  items: T[],
  size: number,
  run: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += size)
    results.push(...(await Promise.all(items.slice(i, i + size).map(run))));
  return results;
}
