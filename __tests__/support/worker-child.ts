/**
 * Worker child processes for the BullMQ tests: worker-process.ts as a JSON-lines child
 * (json-child.ts), ready once its BullMQ worker is, and the events of several workers collected.
 */
import type { RunEvent } from './durable-tasks';
import { anyJsonEvent, killAllJsonChildren, spawnJsonChild, type JsonChild } from './json-child';

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

export interface WorkerChild extends JsonChild {
  /** Every event so far, in order. */
  readonly events: ChildEvent[];
  /** The first event, seen already or to come, that matches. */
  next(
    match: (event: ChildEvent) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<ChildEvent>;
}

/** Starts a worker process and resolves once its BullMQ worker is ready. */
export async function spawnWorker(options: WorkerChildOptions): Promise<WorkerChild> {
  const child = spawnJsonChild('__tests__/support/worker-process.ts', {
    REDIS_URL: options.redisUrl,
    QUEUE_NAME: options.queueName,
    CONCURRENCY: String(options.concurrency ?? 1),
    WORKER_OPTIONS: JSON.stringify(options.workerOptions ?? {}),
    HANG: options.hang === true ? '1' : '0',
    ...(options.tasks !== undefined && { TASK_NAMES: options.tasks.join(',') }),
  }) as WorkerChild;
  await child.next((event) => event.event === 'ready', 'its worker to be ready', 15_000);
  return child;
}

/** Kills every worker still running: for `afterAll`, so that a failed test leaves no process behind. */
export const killAllWorkers = killAllJsonChildren;

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
      anyJsonEvent.off('event', onEvent);
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
    anyJsonEvent.on('event', onEvent);
  });
}
