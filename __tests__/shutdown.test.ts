/**
 * Graceful shutdown of a real child process running the demo app, which follows the README's
 * recipe: on SIGTERM or SIGINT it drains its background tasks and exits 0; a task longer than the
 * drain bound is logged as abandoned, by name, and the process still exits; with a File transport
 * every line it logged is in the file when it has exited.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';

interface Demo {
  child: ChildProcessWithoutNullStreams;
  base: string;
  output: () => string;
  exited: Promise<number | null>;
  notifications: () => string;
}

const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** Starts the demo on a free port and resolves once it says where it listens. */
async function startDemo(env: Record<string, string>): Promise<Demo> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ebt-shutdown-'));
  dirs.push(dir);
  const notificationLog = path.join(dir, 'notifications.log');
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', 'demo-app/server.ts'],
    {
      cwd: path.join(__dirname, '..'),
      env: { ...process.env, PORT: '0', NOTIFICATION_LOG: notificationLog, REDIS_URL: '', ...env },
    },
  );
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const base = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => {
      const match = /demo listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) resolve(match[1]);
    });
    void exited.then((code) =>
      reject(new Error(`demo exited (${code}) before listening:\n${output}`)),
    );
  });
  const notifications = () => {
    try {
      return readFileSync(notificationLog, 'utf8');
    } catch {
      return '';
    }
  };
  return { child, base, output: () => output, exited, notifications };
}

/** The JSON log lines the demo printed. */
function logLines(output: string): Array<Record<string, unknown>> {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line));
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

test('with LOG_FILE, every abandoned task has its line in the file, then "shutdown complete"', async () => {
  const logFile = path.join(mkdtempSync(path.join(tmpdir(), 'ebt-logfile-')), 'demo.log');
  dirs.push(path.dirname(logFile));
  const demo = await startDemo({ DRAIN_TIMEOUT_MS: '200', LOG_FILE: logFile });
  try {
    const tasks = 300;
    for (let i = 0; i < tasks; i++) {
      await request(demo.base)
        .post('/report?ms=60000')
        .set('X-Request-Id', `slow-${i}`)
        .expect(202);
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
