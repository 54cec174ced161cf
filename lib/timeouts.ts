/**
 * The timeouts of a runner's async attempts: one timer for all the attempts that share a timeout,
 * not one each. Attempts with the same timeout expire in the order they started, so each group is
 * a list in start order, linked through the attempts themselves, and only its first member needs
 * the timer. An attempt that ends is unlinked at no cost, where a timer of its own would be one
 * more object held for as long as the task runs (about 150 bytes with its arguments).
 */
import { performance } from 'node:perf_hooks';

/** What the list needs of an attempt; the runner's `Attempt` carries these fields. */
export interface Timed {
  /** `performance.now()` at which the attempt times out. */
  deadline: number;
  /** @internal The list it is in, if any. */
  timeoutList: TimeoutList | undefined;
  /** @internal */
  previousTimed: Timed | undefined;
  /** @internal */
  nextTimed: Timed | undefined;
}

export class Timeouts<T extends Timed> {
  private readonly lists = new Map<number, TimeoutList>();

  /** `expire` is called with each attempt whose deadline has passed, once, after it left its list. */
  constructor(private readonly expire: (attempt: T) => void) {}

  /** Starts `attempt`'s timeout of `timeoutMs`, counted from `startedAt` (a `performance.now()`). */
  add(attempt: T, timeoutMs: number, startedAt: number): void {
    let list = this.lists.get(timeoutMs);
    if (list === undefined) {
      list = new TimeoutList(timeoutMs, this.lists, this.expire as (attempt: Timed) => void);
      this.lists.set(timeoutMs, list);
    }
    attempt.deadline = startedAt + timeoutMs;
    list.append(attempt);
  }

  /** Stops `attempt`'s timeout (the attempt ended); nothing if it has none. */
  delete(attempt: T): void {
    attempt.timeoutList?.unlink(attempt);
  }
}

/** The attempts of one timeout, earliest deadline first, and the one timer for the first. */
class TimeoutList {
  private first: Timed | undefined = undefined;
  private last: Timed | undefined = undefined;
  /** Armed for a deadline no later than the first attempt's, while the list is in use. */
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly lists: Map<number, TimeoutList>,
    private readonly expire: (attempt: Timed) => void,
  ) {}

  append(attempt: Timed): void {
    attempt.timeoutList = this;
    attempt.previousTimed = this.last;
    attempt.nextTimed = undefined;
    if (this.last === undefined) this.first = attempt;
    else this.last.nextTimed = attempt;
    this.last = attempt;
    // A timer still armed (for an attempt that has since ended) fires no later than the first
    // deadline, and re-arms then: an attempt that ends is not worth a clearTimeout.
    if (this.timer === undefined) this.arm(this.first!.deadline - performance.now());
  }

  unlink(attempt: Timed): void {
    const { previousTimed, nextTimed } = attempt;
    if (previousTimed === undefined) this.first = nextTimed;
    else previousTimed.nextTimed = nextTimed;
    if (nextTimed === undefined) this.last = previousTimed;
    else nextTimed.previousTimed = previousTimed;
    attempt.timeoutList = attempt.previousTimed = attempt.nextTimed = undefined;
  }

  /** The timer fired: expires every attempt past its deadline, then waits for the next one. */
  fire(): void {
    this.timer = undefined;
    const now = performance.now();
    try {
      // An attempt that `expire` starts lands at the end, with a deadline after `now`.
      while (this.first !== undefined && this.first.deadline <= now) {
        const attempt = this.first;
        this.unlink(attempt);
        this.expire(attempt);
      }
    } finally {
      if (this.first === undefined) {
        if (this.lists.get(this.timeoutMs) === this) this.lists.delete(this.timeoutMs);
      } else if (this.timer === undefined) this.arm(this.first.deadline - now);
    }
  }

  private arm(delayMs: number): void {
    // setTimeout counts whole milliseconds from the loop's clock, so it may fire a little early:
    // the deadline check in fire() then arms again for what is left.
    this.timer = setTimeout(onTimer, Math.max(1, Math.ceil(delayMs)), this);
    this.timer.unref();
  }
}

function onTimer(list: TimeoutList): void {
  list.fire();
}
