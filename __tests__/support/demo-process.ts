/**
 * The demo server (`demo-app/server.ts`) as a real child process, for the tests that need one:
 * started on free ports (PORT=0, METRICS_PORT=0 unless given), with its own notification log,
 * resolved once it says where it listens.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface Demo {
  child: ChildProcessWithoutNullStreams;
  /** `http://127.0.0.1:<port>` of the app. */
  base: string;
  /** The Prometheus endpoint it printed. */
  metricsUrl: string;
  /** Everything it wrote to stdout and stderr so far. */
  output: () => string;
  exited: Promise<number | null>;
  /** The notification log's content. */
  notifications: () => string;
  /** Kills it if it still runs, and removes its files. */
  cleanUp: () => void;
}

export async function startDemo(env: Record<string, string>): Promise<Demo> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ebt-demo-'));
  const notificationLog = path.join(dir, 'notifications.log');
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', 'demo-app/server.ts'],
    {
      cwd: path.join(__dirname, '..', '..'),
      env: {
        ...process.env,
        PORT: '0',
        METRICS_PORT: '0',
        NOTIFICATION_LOG: notificationLog,
        REDIS_URL: '',
        OTEL_TRACES_EXPORTER: '',
        ...env,
      },
    },
  );
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const [base, metricsUrl] = await new Promise<[string, string]>((resolve, reject) => {
    child.stdout.on('data', () => {
      const listening = /demo listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      const metrics = /curl (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(output);
      if (listening && metrics) resolve([listening[1], metrics[1]]);
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
  const cleanUp = () => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  return { child, base, metricsUrl, output: () => output, exited, notifications, cleanUp };
}

/** The JSON log lines in the demo's output (one record per line; other output is skipped). */
export function logLines(output: string): Array<Record<string, unknown>> {
  const records: Array<Record<string, unknown>> = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{"')) continue;
    try {
      records.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line of the console span exporter's output that happens to start like JSON
    }
  }
  return records;
}
