/**
 * The once-a-minute rule of a connection's error log: the first occurrence of each kind of error
 * is let through, then at most one a minute, and the occurrences held back are counted, so that
 * the next line (or the last, at close) can say how many there were. Memory stays bounded.
 */

/** How long repeats of one error are counted rather than logged. */
export const REPEAT_INTERVAL_MS = 60_000;
/** How many distinct errors one counter remembers; past that, it forgets the least recently logged. */
export const MAX_REMEMBERED_ERRORS = 100;

interface Seen {
  loggedAt: number;
  /** Occurrences since the last line, not logged. */
  repeats: number;
  /** The latest of them, for the line that reports them. */
  latest: Error;
}

/**
 * Lets the first occurrence of each kind through, then at most one a minute, counting the
 * others; hands each occurrence let through to `write` with the count of those held back before it.
 */
export class RepeatCounter {
  /** In the order of their last line: the first is the one to forget when there are too many. */
  private readonly kinds = new Map<string, Seen>();

  constructor(
    private readonly write: (error: Error, repeats: number) => void,
    private readonly now: () => number,
  ) {}

  offer(kind: string, error: Error): void {
    const now = this.now();
    const seen = this.kinds.get(kind);
    if (seen !== undefined && now - seen.loggedAt < REPEAT_INTERVAL_MS) {
      seen.repeats += 1;
      seen.latest = error;
      return;
    }
    this.kinds.delete(kind);
    this.kinds.set(kind, { loggedAt: now, repeats: 0, latest: error });
    if (this.kinds.size > MAX_REMEMBERED_ERRORS) this.forget(this.kinds.keys().next().value!);
    this.write(error, seen?.repeats ?? 0);
  }

  /** Forgets every kind, logging the repeats still untold. */
  flush(): void {
    for (const kind of [...this.kinds.keys()]) this.forget(kind);
  }

  /** Forgets a kind, after logging its repeats still untold: none goes uncounted. */
  private forget(kind: string): void {
    const seen = this.kinds.get(kind)!;
    this.kinds.delete(kind);
    if (seen.repeats > 0) this.write(seen.latest, seen.repeats);
  }
}
