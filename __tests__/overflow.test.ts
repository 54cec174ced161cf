/**
 * Overflow is bounded in memory and in log lines. One request adds 2,000,000 tasks past the
 * default `maxPending` (10,000) with the default logger, in a child process whose old space is
 * limited to 256 MB: each rejection is counted, and all of them make one log line (a line per
 * task made 1,990,000 records, which winston's Console transport held in memory until the
 * process died of it). The heap used is stated and bounded.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { LOG_MESSAGES } from '../lib';

const ADDS = 2_000_000;
/** The bound the heap must stay under: far below the 256 MB limit, far above 10,000 pending tasks. */
const HEAP_BOUND_MB = 64;

test(`${ADDS.toLocaleString('en-US')} adds in one request with the default logger under --max-old-space-size=256: one line, every rejection counted, the heap under ${HEAP_BOUND_MB} MB`, async () => {
  const child = spawn(
    process.execPath,
    [
      '--max-old-space-size=256',
      '--expose-gc',
      '-r',
      'ts-node/register/transpile-only',
      path.join(__dirname, 'support/overflow-child.ts'),
    ],
    { cwd: path.join(__dirname, '..'), env: { ...process.env, ADDS: String(ADDS) } },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise((resolve) => child.on('close', resolve));
  expect({ code, signal: child.signalCode }).toEqual({ code: 0, signal: null });
  const result = JSON.parse(stderr.trim().split('\n').at(-1)!) as {
    stats: Record<string, number>;
    heapAfterAddsMB: number;
    heapAtEndMB: number;
  };
  process.stdout.write(
    `heap used after ${ADDS} adds: ${result.heapAfterAddsMB.toFixed(1)} MB; at the end, after a GC: ${result.heapAtEndMB.toFixed(1)} MB\n`,
  );
  expect(result.stats).toMatchObject({
    succeeded: 10_000,
    rejected: ADDS - 10_000,
    pending: 0,
    running: 0,
  });
  const lines = stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(lines).toEqual([
    expect.objectContaining({
      level: 'error',
      message: LOG_MESSAGES.tasksRejected,
      count: ADDS - 10_000,
      tasks: { noop: ADDS - 10_000 },
      maxPending: 10_000,
    }),
  ]);
  expect(result.heapAfterAddsMB).toBeLessThan(HEAP_BOUND_MB);
  expect(result.heapAtEndMB).toBeLessThan(HEAP_BOUND_MB);
}, 120_000);
