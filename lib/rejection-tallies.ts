/**
 * Tasks refused because the queue was full, tallied per request, so that an overflow makes one
 * log line per request and per second instead of one per task: a request that adds two million
 * tasks past `maxPending` would otherwise make two million lines, which a logger holds in memory
 * until the process dies. A tally is written when its request's response ends, one second after
 * it was opened, or when `writeAll()` is called (by `drain()`), whichever comes first.
 */
import type { RequestSource } from './attempting';
import { MAX_NAME_CHARS, clip } from './thrown';

/** How long a tally stays open, at most: the most lines an overflowing request makes is one a second. */
export const TALLY_MS = 1_000;

/** The most distinct task names a tally counts one by one; later ones are counted together. */
export const MAX_TALLIED_NAMES = 100;

/** The key under which the tasks of names past `MAX_TALLIED_NAMES` are counted. */
export const OTHER_NAMES = '(other names)';

/** The rejections of one request since its last line. */
export interface RejectionTally {
  count: number;
  /** Rejections by task name, for at most `MAX_TALLIED_NAMES` names. */
  readonly tasks: Record<string, number>;
  readonly maxPending: number;
}

export class RejectionTallies {
  private readonly open = new Map<RequestSource, OpenTally>();

  /** `write` makes the line of a tally. */
  constructor(private readonly write: (source: RequestSource, tally: RejectionTally) => void) {}

  /** Counts one rejected task of `source`'s request. */
  add(source: RequestSource, task: string, maxPending: number): void {
    let tally = this.open.get(source);
    if (tally === undefined) {
      tally = {
        count: 0,
        tasks: Object.create(null) as Record<string, number>,
        names: 0,
        maxPending,
        timer: setTimeout(onTallyDue, TALLY_MS, this, source),
      };
      this.open.set(source, tally);
    }
    tally.count++;
    const name = clip(task, MAX_NAME_CHARS);
    if (name in tally.tasks) tally.tasks[name]++;
    else if (tally.names < MAX_TALLIED_NAMES) {
      tally.tasks[name] = 1;
      tally.names++;
    } else tally.tasks[OTHER_NAMES] = (tally.tasks[OTHER_NAMES] ?? 0) + 1;
  }

  /** Writes the open tally of `source`'s request, if it has one. */
  writeOf(source: RequestSource): void {
    const tally = this.open.get(source);
    if (tally === undefined) return;
    this.open.delete(source);
    clearTimeout(tally.timer);
    this.write(source, { count: tally.count, tasks: tally.tasks, maxPending: tally.maxPending });
  }

  /** Writes every open tally. */
  writeAll(): void {
    for (const source of [...this.open.keys()]) this.writeOf(source);
  }
}

interface OpenTally extends RejectionTally {
  /** Distinct names in `tasks`, `OTHER_NAMES` aside. */
  names: number;
  readonly timer: NodeJS.Timeout;
}

function onTallyDue(tallies: RejectionTallies, source: RequestSource): void {
  tallies.writeOf(source);
}
