/**
 * A child process that reports on stdout in JSON lines (the pg-boss web process, the demo): spawns
 * a TypeScript script under ts-node on the Node running the tests, keeps its events, and lets a
 * test wait for one, or kill the process outright.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import path from 'node:path';

export type JsonEvent = { event: string } & Record<string, unknown>;

export interface JsonChild {
  readonly pid: number;
  /** Every event so far, in order. */
  readonly events: JsonEvent[];
  /** What it wrote to stderr so far. */
  stderr(): string;
  /** The first event, seen already or to come, that matches. */
  next(match: (event: JsonEvent) => boolean, what: string, timeoutMs?: number): Promise<JsonEvent>;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void>;
}

const ROOT = path.join(__dirname, '..', '..');
const live = new Set<ChildProcess>();

/** Starts `script` (relative to the repository) with `env` added to this process's environment. */
export function spawnJsonChild(script: string, env: Record<string, string>): JsonChild {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', script], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const events: JsonEvent[] = [];
  const heard = new EventEmitter();
  let stderr = '';
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      let event: JsonEvent;
      try {
        event = JSON.parse(line) as JsonEvent;
      } catch {
        event = { event: 'text', line };
      }
      events.push(event);
      heard.emit('event', event);
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      live.delete(child);
      heard.emit('exit');
      resolve();
    }),
  );
  const next: JsonChild['next'] = (match, what, timeoutMs = 20_000) => {
    const seen = events.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        heard.off('event', onEvent).off('exit', onExit);
      };
      const onEvent = (event: JsonEvent) => {
        if (!match(event)) return;
        done();
        resolve(event);
      };
      const onExit = () => {
        done();
        reject(new Error(`process ${child.pid} exited before ${what}; stderr:\n${stderr}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what} from ${child.pid}; stderr:\n${stderr}`));
      }, timeoutMs);
      heard.on('event', onEvent).on('exit', onExit);
    });
  };
  return {
    pid: child.pid!,
    events,
    stderr: () => stderr,
    next,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Kills every child still running: for `afterAll`, so that a failed test leaves no process behind. */
export async function killAllJsonChildren(): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}
