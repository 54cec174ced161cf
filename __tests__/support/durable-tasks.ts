/**
 * The defined tasks of the BullMQ tests, shared by the test process (the web side, and in-process
 * runs) and the worker child processes. Each run is announced on `runs`; a child process writes
 * what it hears there to its stdout, so the test sees which process ran what, for which request.
 */
import { EventEmitter } from 'node:events';
import { defineTask } from '../../lib';

export interface RunEvent {
  event: 'started' | 'ran';
  task: string;
  id: string;
  requestId: string;
  attempt: number;
  pid: number;
}

/** Every run of the tasks below in this process. */
export const runs = new EventEmitter();

/** Takes `ms` milliseconds (none by default), then records that it ran. */
export const recordTask = defineTask(
  'record',
  async (payload: { id: string; ms?: number }, ctx) => {
    if (payload.ms !== undefined) await new Promise((resolve) => setTimeout(resolve, payload.ms));
    announce('ran', 'record', payload.id, ctx.request.id, ctx.attempt);
  },
);

/**
 * Says it started, then, in a process started with `HANG=1`, never ends (the process is to be
 * killed mid-job); anywhere else it ends at once. No timeout, so only a kill can stop it.
 */
export const stallTask = defineTask(
  'stall',
  async (payload: { id: string }, ctx) => {
    announce('started', 'stall', payload.id, ctx.request.id, ctx.attempt);
    if (process.env.HANG === '1') await new Promise(() => undefined);
    announce('ran', 'stall', payload.id, ctx.request.id, ctx.attempt);
  },
  { timeoutMs: 0 },
);

export const TASKS = [recordTask, stallTask];

function announce(
  event: RunEvent['event'],
  task: string,
  id: string,
  requestId: string,
  attempt: number,
): void {
  const run: RunEvent = { event, task, id, requestId, attempt, pid: process.pid };
  runs.emit('run', run);
}
