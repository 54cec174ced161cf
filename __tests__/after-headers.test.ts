/**
 * An error after the response's headers were sent, with a hostile thrown value: the handler logs
 * it once and closes the connection itself, so Express's final handler (which reads `status`,
 * `stack` and `toString` of what was thrown, and crashed the process on these values) never sees
 * it. Each value is thrown synchronously and asynchronously, on Express 5 and 4, in a real child
 * process that must stay up.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

/** What the child reports for one request. */
interface Outcome {
  version: string;
  value: string;
  how: string;
  status: number;
  body: string;
  /** True when the response arrived whole; false when the connection was cut. */
  complete: boolean;
  /** True when the connection was still open 5 s later (the child then cut it). */
  hung: boolean;
  /** `request failed` lines logged for this request. */
  logged: number;
  /** Any other line logged for it (there must be none). */
  otherLines: string[];
}

interface Report {
  outcomes: Outcome[];
  /** Uncaught exceptions and unhandled rejections seen by the child. */
  uncaught: string[];
  /** A plain request after all the hostile ones. */
  stillServing: boolean;
}

const VALUES = [
  'a proxy whose traps throw',
  'a revoked proxy',
  'an object whose toString throws',
  'an error whose stack getter throws',
  'Object.create(null)',
  'an error whose message getter throws',
  'an object whose status getter throws',
];
const WAYS = ['thrown in the route', 'passed to next() later', 'rejected by an async route'];

let report: Report;

beforeAll(async () => {
  report = await runChild();
}, 60_000);

test('the child process stayed up: no uncaught exception or unhandled rejection, and it still serves', () => {
  expect(report.uncaught).toEqual([]);
  expect(report.stillServing).toBe(true);
});

test('every value was tried every way on both Express versions', () => {
  const tried = new Set(report.outcomes.map((o) => `${o.version}|${o.value}|${o.how}`));
  for (const version of ['Express 5', 'Express 4'])
    for (const value of VALUES)
      for (const how of WAYS) {
        // Express 4 does not catch a rejected async route (it would be an unhandled rejection).
        if (version === 'Express 4' && how === WAYS[2]) continue;
        expect(tried).toContain(`${version}|${value}|${how}`);
      }
  expect(tried.size).toBe(2 * VALUES.length * WAYS.length - VALUES.length);
});

test.each(VALUES)(
  '%s after headers: the connection is cut after the partial body, and one line is logged',
  (value) => {
    const outcomes = report.outcomes.filter((o) => o.value === value);
    expect(outcomes).toHaveLength(WAYS.length * 2 - 1);
    for (const outcome of outcomes) {
      expect(outcome).toMatchObject({
        status: 200,
        body: 'partial',
        complete: false,
        hung: false,
        logged: 1,
      });
      expect(outcome.otherLines).toEqual([]);
    }
  },
);

/** Runs `support/after-headers-child.ts` and parses the report it prints as its last line. */
function runChild(): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        path.join(__dirname, 'support/after-headers-child.ts'),
      ],
      { cwd: path.join(__dirname, '..'), env: { ...process.env, NODE_ENV: 'development' } },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      if (code !== 0 || !last.startsWith('{'))
        reject(new Error(`child exited (${code ?? signal}):\n${stdout}\n${stderr}`));
      else resolve(JSON.parse(last) as Report);
    });
  });
}
