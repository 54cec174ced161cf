/**
 * The worker `startWorker()` runs: one that waits before asking Redis for a job again while Redis
 * refuses to give it one (out of memory, an ACL that forbids BullMQ's scripts, a read-only
 * replica…), 100 ms after the first refusal, then twice as long after each, up to 5 s, and not at
 * all once Redis gives an answer again.
 *
 * Why a subclass: BullMQ's main loop reports such a refusal as an 'error' and asks again at once,
 * thousands of times a second (one idle worker out of memory: 65% of a core, and 25,000 Redis
 * commands/s). Its own pause between attempts, `runRetryDelay` (documented as internal), applies
 * to connection errors only. So the wait is added around the one step that is refused,
 * `moveToActive`, which BullMQ's typings leave protected for subclasses; close() and pause() cut
 * a wait short.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isNotConnectionError, type Job } from 'bullmq';
import { ReadingWorker } from './unreadable-job';

/** The wait after one refusal: BullMQ's own wait after a failed blocking wait for jobs. */
export const FIRST_RETRY_DELAY_MS = 100;
/**
 * The longest wait. It is also the longest a worker takes to notice that Redis accepts again; an
 * idle BullMQ worker asks Redis every 5 s (`drainDelay`) anyway, and at one refused attempt every
 * 5 s a worker costs Redis nothing measurable, so a longer wait would only slow recovery.
 */
export const MAX_RETRY_DELAY_MS = 5_000;

/** How long to wait before asking Redis for a job, after `refusals` refusals in a row. */
export function retryDelayMs(refusals: number): number {
  if (refusals <= 0) return 0;
  return Math.min(FIRST_RETRY_DELAY_MS * 2 ** (refusals - 1), MAX_RETRY_DELAY_MS);
}

/** BullMQ's Worker (reading unreadable jobs, as `ReadingWorker`), paced while Redis refuses it. */
export class PacedWorker extends ReadingWorker {
  /** Refusals since Redis last answered; reset by any answer, a job or none. */
  private refusals = 0;
  /** Ends the waits under way: replaced by a fresh one each time close() or pause() aborts it. */
  private wakeUp = new AbortController();

  protected override async moveToActive(
    token: string,
    name?: string,
  ): Promise<Job<unknown, unknown, string>> {
    if (!(await this.waitBeforeRetry())) {
      // Woken by close() or pause(): take no job, as BullMQ's own loop takes none once they are called.
      // BullMQ's moveToActive resolves to undefined too when there is no job, though its type says Job.
      return undefined as unknown as Job<unknown, unknown, string>;
    }
    try {
      const job = await super.moveToActive(token, name);
      this.refusals = 0;
      return job;
    } catch (error) {
      // Connection errors are paced by BullMQ (`runRetryDelay`) and by ioredis's reconnection.
      if (error instanceof Error && isNotConnectionError(error)) this.refusals += 1;
      throw error;
    }
  }

  // BullMQ's close() and pause() mark the worker closing or paused before their first await: woken
  // after that, the main loop stops instead of asking again.
  override close(force?: boolean): Promise<void> {
    const closed = super.close(force);
    this.wakeWaiters();
    return closed;
  }

  override pause(doNotWaitActive?: boolean): Promise<void> {
    const paused = super.pause(doNotWaitActive);
    this.wakeWaiters();
    return paused;
  }

  private wakeWaiters(): void {
    this.wakeUp.abort();
    this.wakeUp = new AbortController();
  }

  /** Waits as the refusals so far ask; false when close() or pause() cut the wait short. */
  private async waitBeforeRetry(): Promise<boolean> {
    const delayMs = retryDelayMs(this.refusals);
    if (delayMs === 0) return true;
    try {
      await sleep(delayMs, undefined, { signal: this.wakeUp.signal });
      return true;
    } catch {
      return false; // aborted
    }
  }
}
