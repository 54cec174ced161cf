/**
 * The queues a runner holds unfinished work for: what `drain()` walks when it gives up. Linked
 * through the queues themselves, so that joining and leaving (once per request that queues a
 * task) allocate nothing and hash nothing, as a `Set` would.
 */
import type { RequestQueue } from './request-queue';

export class LiveQueues {
  private first: RequestQueue | undefined = undefined;
  private last: RequestQueue | undefined = undefined;

  add(queue: RequestQueue): void {
    if (queue.isLive) return;
    queue.isLive = true;
    queue.previousLive = this.last;
    if (this.last === undefined) this.first = queue;
    else this.last.nextLive = queue;
    this.last = queue;
  }

  delete(queue: RequestQueue): void {
    if (!queue.isLive) return;
    const { previousLive, nextLive } = queue;
    if (previousLive === undefined) this.first = nextLive;
    else previousLive.nextLive = nextLive;
    if (nextLive === undefined) this.last = previousLive;
    else nextLive.previousLive = previousLive;
    queue.isLive = false;
    queue.previousLive = queue.nextLive = undefined;
  }

  /** Empties the list and returns what it held, oldest first. */
  takeAll(): RequestQueue[] {
    const all: RequestQueue[] = [];
    while (this.first !== undefined) {
      all.push(this.first);
      this.delete(this.first);
    }
    return all;
  }
}
