/**
 * Jobs whose stored data BullMQ cannot parse (not JSON: written by a foreign producer, or by
 * hand). BullMQ's `Job.fromJSON` throws on them while taking the job, before any processor
 * runs: the job stays active, stalls, and is taken again, forever. The worker made here reads
 * such a job with a stand-in for its data, which says why it cannot be read, so that the
 * processor fails it once, as any other job it cannot run.
 */
import { Worker, type Job, type JobJson } from 'bullmq';

/** The data of a job that could not be parsed. */
export interface UnreadableData {
  readonly reason: string;
}

/** True for the stand-in data of a job that could not be parsed. */
export function isUnreadableData(data: unknown): data is UnreadableData {
  return data instanceof Unreadable;
}

/** BullMQ's Worker, except that a job whose stored data is not JSON is still taken, to be failed. */
export class ReadingWorker extends Worker<unknown, unknown, string> {
  protected override createJob(json: JobJson, jobId: string): Job<unknown, unknown, string> {
    try {
      return super.createJob(json, jobId);
    } catch (error) {
      // Only `data` is parsed here (the options were, by the backend, before): read it as `{}`.
      const job = super.createJob({ ...json, data: '{}' }, jobId);
      job.data = new Unreadable(`its data is not JSON (${describe(error)})`);
      return job;
    }
  }
}

class Unreadable implements UnreadableData {
  constructor(readonly reason: string) {}
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
