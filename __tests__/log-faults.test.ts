/**
 * Unusual loggers and transports, each in a real child process whose stderr is read: a winston-2
 * transport that emits 'error' or throws, a logger format that returns undefined, a transport
 * destroyed without an error, redaction in a transport's own format, a hung transport the app
 * removed, a `defaultMeta` getter that throws, a silenced logger. None crashes the process, and
 * each record is delivered once, or on stderr as the app's formats make it.
 */
import { LOG_MESSAGES } from '../lib';
import { jsonLines, runChild } from './support/run-child';

interface Run {
  result: Record<string, unknown>;
  stderr: Array<Record<string, unknown>>;
  stderrText: string;
  code: number | null;
}

async function runScenario(scenario: string): Promise<Run> {
  const { stdout, stderr, code } = await runChild('log-faults-child.ts', { SCENARIO: scenario });
  const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  return { result, stderr: jsonLines(stderr), stderrText: stderr, code };
}

const tasks = (records: Array<Record<string, unknown>>) =>
  records.map((record) => record.task).filter((task): task is string => typeof task === 'string');
const range = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => `r${from + i}`);

test("a winston-2 transport that emits 'error': no crash (winston's re-pipe of it throws inside the event), and what it did not take is on stderr", async () => {
  const run = await runScenario('legacy-error');
  expect(run.code).toBe(0);
  const got = run.result.got as string[];
  expect([...got, ...tasks(run.stderr)].sort()).toEqual(range(0, 5).sort());
  expect(run.stderr).toContainEqual(
    expect.objectContaining({ message: LOG_MESSAGES.loggerFailed, forGood: true }),
  );
}, 30_000);

test('a winston-2 transport whose log() throws on one record: that record is on stderr, and the transport gets the other 49', async () => {
  const run = await runScenario('legacy-throws');
  expect(run.code).toBe(0);
  expect(run.result).toEqual({ got: range(0, 50).filter((task) => task !== 'r1'), closed: true });
  expect(tasks(run.stderr)).toEqual(['r1']);
}, 30_000);

test('a logger format that returns undefined for a record it drops: the transport keeps working and gets all 40 others', async () => {
  const run = await runScenario('format-undefined');
  expect(run.code).toBe(0);
  expect(run.result).toEqual({ got: range(0, 40), closed: true });
  expect(tasks(run.stderr)).toEqual([]);
}, 30_000);

test("a logger made with no transport keeps winston's ways: the records logged before its first transport reach it once added, and none goes to stderr", async () => {
  const run = await runScenario('transport-added-later');
  expect(run.code).toBe(0);
  expect(run.result).toEqual({ got: ['r0', 'r1', 'r2'], closed: true });
  expect(tasks(run.stderr)).toEqual([]);
}, 30_000);

test('a transport destroyed without an error is bypassed: every later record is on stderr, redacted as the format says, and none reaches winston\'s raw "no transports" warning', async () => {
  const run = await runScenario('destroyed-quietly');
  expect(run.code).toBe(0);
  const got = run.result.got as string[];
  expect(got).toEqual(['r0', 'r1']);
  expect(tasks(run.stderr).sort()).toEqual(range(2, 10).sort());
  expect(run.stderrText).not.toContain('SECRET');
  expect(run.stderrText).not.toContain('Attempt to write logs with no transports');
  expect(run.result.closed).toBe(true);
}, 30_000);

test("redaction in the transport's own format holds on stderr, for a stuck logger's records and for what a close that timed out gives it", async () => {
  const run = await runScenario('transport-redaction');
  expect(run.code).toBe(0);
  expect(run.stderrText).not.toContain('SECRET');
  const probes = run.stderr.filter((record) => record.message === 'probe');
  expect(probes.length + (run.result.dropped as number)).toBeGreaterThanOrEqual(599);
  for (const record of probes) expect(record.url).toBe('/pay?token=[redacted]');
}, 30_000);

test('a hung transport the app removed and replaced is not waited for: closeLogger() is true once the new one has all', async () => {
  const run = await runScenario('removed-transport');
  expect(run.code).toBe(0);
  expect(run.result).toEqual({ got: range(1, 11), closed: true });
}, 30_000);

test('a defaultMeta getter that throws: safeLog() does not throw, and the record is on stderr, minimal', async () => {
  const run = await runScenario('default-meta-throws');
  expect(run.code).toBe(0);
  expect(run.result).toMatchObject({ threw: false, got: [] });
  expect(run.stderr).toContainEqual({ level: 'error', message: 'probe', task: 'r0' });
  expect(run.stderrText).not.toContain('SECRET');
}, 30_000);

test('a silenced logger: the library writes nothing to stderr either, before or after closeLogger()', async () => {
  const run = await runScenario('silent');
  expect(run.code).toBe(0);
  expect(run.result).toEqual({ closed: true });
  expect(run.stderrText).toBe('');
}, 30_000);
