/**
 * Worker child processes for the BullMQ tests: spawns worker-process.ts, reads its JSON lines
 * as events, and lets a test wait for events, stop the worker gracefully or kill it outright.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { RunEvent } from './durable-tasks';

export type ChildEvent = (
  | { event: 'ready' | 'closed' }
  | RunEvent
  | { event: 'log'; level: string; message: string }
  | { event: 'taskError'; task: string; attempt: number; jobId?: string; message: string }
) & {
  [field: string]: unknown;
};

export interface WorkerChildOptions {
  redisUrl: string;
  queueName: string;
  concurrency?: number;
  /** Passed to startWorker's `workerOptions`. */
  workerOptions?: object;
  /** The `stall` task never ends in this worker. */
  hang?: boolean;
  /** The names of the tasks this worker runs. Default: all of durable-tasks.ts. */
  tasks?: string[];
}

export interface WorkerChild {
  readonly pid: number;
  /** Every event so far, in order. */
  readonly events: ChildEvent[];
  /** The first event, seen already or to come, that matches. */
  next(
    match: (event: ChildEvent) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<ChildEvent>;
  /** SIGTERM: the worker closes (waiting for its running jobs) and exits. */
  stop(): Promise<void>;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void>;
}

const SCRIPT = path.join(__dirname, 'worker-process.ts');
const ROOT = path.join(__dirname, '..', '..');
const live = new Set<ChildProcess>();
/** Every event of every worker, once it is in that worker's `events`. */
const anyEvent = new EventEmitter();

/** Starts a worker process and resolves once its BullMQ worker is ready. */
export async function spawnWorker(options: WorkerChildOptions): Promise<WorkerChild> {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', SCRIPT], {
    cwd: ROOT,
    env: {
      ...process.env,
      REDIS_URL: options.redisUrl,
      QUEUE_NAME: options.queueName,
      CONCURRENCY: String(options.concurrency ?? 1),
      WORKER_OPTIONS: JSON.stringify(options.workerOptions ?? {}),
      HANG: options.hang === true ? '1' : '0',
      ...(options.tasks !== undefined && { TASK_NAMES: options.tasks.join(',') }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const events: ChildEvent[] = [];
  const heard = new EventEmitter();
  let stderr = '';
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const event = JSON.parse(buffered.slice(0, newline)) as ChildEvent;
      buffered = buffered.slice(newline + 1);
      events.push(event);
      heard.emit('event', event);
      anyEvent.emit('event', event);
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

  const next: WorkerChild['next'] = (match, what, timeoutMs = 15_000) => {
    const seen = events.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        heard.off('event', onEvent).off('exit', onExit);
      };
      const onEvent = (event: ChildEvent) => {
        if (!match(event)) return;
        done();
        resolve(event);
      };
      const onExit = () => {
        done();
        reject(new Error(`worker ${child.pid} exited before ${what}; stderr:\n${stderr}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(`timed out waiting for ${what} from worker ${child.pid}; stderr:\n${stderr}`),
        );
      }, timeoutMs);
      heard.on('event', onEvent).on('exit', onExit);
    });
  };

  await next((event) => event.event === 'ready', 'its worker to be ready');
  return {
    pid: child.pid!,
    events,
    next,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Kills every worker still running: for `afterAll`, so that a failed test leaves no process behind. */
export async function killAllWorkers(): Promise<void> {
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

/** Waits until `count` events matching `match` have come from `workers` in all, and returns them. */
export function collect(
  workers: WorkerChild[],
  match: (event: ChildEvent) => boolean,
  count: number,
  timeoutMs = 15_000,
): Promise<ChildEvent[]> {
  const all = () => workers.flatMap((worker) => worker.events.filter(match));
  if (all().length >= count) return Promise.resolve(all());
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      anyEvent.off('event', onEvent);
    };
    const onEvent = () => {
      if (all().length < count) return;
      done();
      resolve(all());
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out with ${all().length} of ${count} events`));
    }, timeoutMs);
    anyEvent.on('event', onEvent);
  });
}
