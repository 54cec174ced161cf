/**
 * Graceful shutdown of a real child process running the demo app, which follows the README's
 * recipe: on SIGTERM or SIGINT it drains its background tasks and exits 0; a task longer than the
 * drain bound is logged as abandoned, by name, and the process still exits; with a File transport
 * every line it logged is in the file when it has exited.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { logLines, startDemo as start, type Demo } from './support/demo-process';

const running: Demo[] = [];
const dirs: string[] = [];
afterAll(() => {
  running.forEach((demo) => demo.cleanUp());
  dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true }));
});

async function startDemo(env: Record<string, string>): Promise<Demo> {
  const demo = await start(env);
  running.push(demo);
  return demo;
}

test.each(['SIGTERM', 'SIGINT'] as const)(
  'on %s the demo finishes its running task, then exits 0',
  async (signal) => {
    const demo = await startDemo({ DRAIN_TIMEOUT_MS: '10000' });
    try {
      await request(demo.base).post('/report?ms=300').expect(202);
      demo.child.kill(signal);
      expect(await demo.exited).toBe(0);
      expect(demo.notifications()).toMatch(
        /notification for reports@example\.com: report [\w-]+ built in 300 ms/,
      );
      expect(logLines(demo.output()).pop()).toMatchObject({
        level: 'info',
        message: 'shutdown complete',
        completed: true,
        abandoned: 0,
      });
    } finally {
      demo.child.kill('SIGKILL');
    }
  },
  30_000,
);

test('a task longer than the drain bound is logged as abandoned, by name, and the process still exits 0', async () => {
  const demo = await startDemo({ DRAIN_TIMEOUT_MS: '200' });
  try {
    await request(demo.base).post('/report?ms=30000').set('X-Request-Id', 'shutdown-1').expect(202);
    demo.child.kill('SIGTERM');
    expect(await demo.exited).toBe(0);
    expect(logLines(demo.output())).toContainEqual(
      expect.objectContaining({
        level: 'error',
        message: 'background task abandoned',
        task: 'build-report',
        requestId: 'shutdown-1',
        state: 'running',
      }),
    );
    expect(logLines(demo.output()).pop()).toMatchObject({
      message: 'shutdown complete',
      completed: false,
      abandoned: 1,
    });
    expect(demo.notifications()).toBe('');
  } finally {
    demo.child.kill('SIGKILL');
  }
}, 30_000);

test('with LOG_FILE, every one of 2,000 abandoned tasks has its line in the file, then "shutdown complete"', async () => {
  const logFile = path.join(mkdtempSync(path.join(tmpdir(), 'ebt-logfile-')), 'demo.log');
  dirs.push(path.dirname(logFile));
  const demo = await startDemo({ DRAIN_TIMEOUT_MS: '200', LOG_FILE: logFile });
  try {
    // More than the 1,000 records a logger may hold unacknowledged: drain() must write its
    // lines at the File transport's pace, or the tail of them would spill to stderr.
    const tasks = 2_000;
    for (let i = 0; i < tasks; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) =>
          request(demo.base)
            .post('/report?ms=60000')
            .set('X-Request-Id', `slow-${i + j}`)
            .expect(202),
        ),
      );
    }
    demo.child.kill('SIGTERM');
    expect(await demo.exited).toBe(0);
    const lines = readFileSync(logFile, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const abandoned = lines.filter((line) => line.message === 'background task abandoned');
    expect(abandoned).toHaveLength(tasks);
    expect(new Set(abandoned.map((line) => line.requestId)).size).toBe(tasks);
    expect(lines.at(-1)).toMatchObject({
      level: 'info',
      message: 'shutdown complete',
      completed: false,
      abandoned: tasks,
    });
    expect(logLines(demo.output())).toEqual([]); // nothing went to the console instead
  } finally {
    demo.child.kill('SIGKILL');
  }
}, 60_000);

/** Queues `count` slow reports on the demo, `batch` requests at a time. */
async function queueReports(demo: Demo, count: number, ms: number): Promise<void> {
  for (let i = 0; i < count; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, (_, j) =>
        request(demo.base)
          .post(`/report?ms=${ms}`)
          .set('X-Request-Id', `slow-${i + j}`)
          .expect(202),
      ),
    );
  }
}

/** The JSON lines of a log's text. */
function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * A named pipe for LOG_FILE, read 4 KB every 25 ms until the demo closes it: a File transport
 * that is busy when the demo shuts down, as on a loaded disk or a slow log shipper. Resolves
 * with all that was written.
 */
function slowLogPipe(): { file: string; text: Promise<string> } {
  const dir = mkdtempSync(path.join(tmpdir(), 'ebt-logpipe-'));
  dirs.push(dir);
  const file = path.join(dir, 'demo.log');
  execFileSync('mkfifo', [file]);
  const text = new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const stream = createReadStream(file);
    stream.on('readable', () => undefined);
    const timer = setInterval(() => {
      const chunk = stream.read(4_096) as Buffer | null;
      if (chunk !== null) chunks.push(chunk);
    }, 25);
    stream.on('end', () => {
      clearInterval(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    stream.on('error', reject);
  });
  return { file, text };
}

test('three runs in a row: with LOG_FILE, 300 reports of 5 s and DRAIN_TIMEOUT_MS=500, every abandoned line is in the file, then "shutdown complete"', async () => {
  // Today the file got 131 of about 290 abandoned lines and no "shutdown complete", in 5 runs of 6:
  // closeLogger() ended winston while it still held records.
  for (let run = 0; run < 3; run++) {
    const log = slowLogPipe();
    const demo = await startDemo({ DRAIN_TIMEOUT_MS: '500', LOG_FILE: log.file });
    try {
      await queueReports(demo, 300, 5_000);
      demo.child.kill('SIGTERM');
      expect(await demo.exited).toBe(0);
      const lines = jsonLines(await log.text);
      const abandoned = lines.filter((line) => line.message === 'background task abandoned');
      const last = lines.at(-1) as { message: string; completed: boolean; abandoned: number };
      expect({ run, last: last.message, completed: last.completed }).toEqual({
        run,
        last: 'shutdown complete',
        completed: false,
      });
      // Every task still running or waiting at the drain's end is abandoned, and has its line.
      expect(abandoned).toHaveLength(last.abandoned);
      expect(new Set(abandoned.map((line) => line.requestId)).size).toBe(last.abandoned);
      expect(last.abandoned).toBeGreaterThan(250);
      expect(logLines(demo.output())).toEqual([]);
    } finally {
      demo.child.kill('SIGKILL');
    }
  }
}, 90_000);

test('a second SIGTERM while the first drains is ignored: one "shutdown complete", after every abandoned line', async () => {
  const log = slowLogPipe();
  const demo = await startDemo({ DRAIN_TIMEOUT_MS: '300', LOG_FILE: log.file });
  try {
    await queueReports(demo, 1_000, 60_000);
    demo.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 350)); // the first drain is giving up now
    demo.child.kill('SIGTERM');
    expect(await demo.exited).toBe(0);
    const lines = jsonLines(await log.text);
    const completes = lines.filter((line) => line.message === 'shutdown complete');
    expect(completes).toEqual([expect.objectContaining({ completed: false, abandoned: 1_000 })]);
    expect(lines.at(-1)).toMatchObject({ message: 'shutdown complete' });
    expect(lines.filter((line) => line.message === 'background task abandoned')).toHaveLength(
      1_000,
    );
  } finally {
    demo.child.kill('SIGKILL');
  }
}, 60_000);
