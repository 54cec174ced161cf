/**
 * Graceful shutdown of a real child process running the demo app, which follows the README's
 * recipe: on SIGTERM or SIGINT it drains its background tasks and exits 0; a task longer than the
 * drain bound is logged as abandoned, by name, and the process still exits; with a File transport
 * every line it logged is in the file when it has exited.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
