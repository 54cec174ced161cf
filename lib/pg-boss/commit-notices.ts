/**
 * Proofs of commit that cost no round trip, for the fast path of `addInTransaction()`: each
 * producer listens on a channel of its own, through pg-boss's `IDatabase.listen()` (a dedicated
 * session with a heartbeat and reconnects), and each insert sends `pg_notify(channel, jobId)` in
 * the caller's transaction. PostgreSQL delivers a notification only when its transaction commits
 * (never one of a rolled-back transaction or savepoint), so its arrival proves the job committed.
 * The same statement reads how long the transaction had been open, on the database's clock, so
 * that the lease pg-boss counted from the transaction's start can be placed on this process's
 * clock, conservatively. A database that cannot listen (an adapter without `listen`) proves
 * nothing, and its jobs are claimed as before.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Db as IDatabase } from 'pg-boss';
import type { CommitWatcher } from '../durable';
import { errorFields, toError } from '../thrown';

/** pg-boss's job ids. */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// clock_timestamp() - now(): how long the transaction had been open when this statement ran.
const NOTICE_SQL =
  'SELECT pg_notify($1, $2), 1000 * EXTRACT(EPOCH FROM clock_timestamp() - now())::float8 AS open_ms';

export class CommitNotices {
  /**
   * Unique to this producer, so that only its own inserts notify it; lower case, since PGlite's
   * `listen()` sends it unquoted, and 36 bytes, within PostgreSQL's 63.
   */
  readonly channel = `ebt_${randomUUID().replaceAll('-', '')}`;
  private readonly watchers: CommitWatcher[] = [];
  private opening: Promise<void> | undefined = undefined;
  private handle: { close(): Promise<void> } | undefined = undefined;
  private listening = false;
  private closed = false;

  /** @param report Where errors go: a LISTEN that failed, an unreadable notification. */
  constructor(private readonly report: (error: Error) => void) {}

  watch(watcher: CommitWatcher): void {
    this.watchers.push(watcher);
  }

  /** Opens the listener once, if `db` can listen; never rejects (a failure is reported, and nothing is proven). */
  opened(db: IDatabase): Promise<void> {
    this.opening ??= this.open(db);
    return this.opening;
  }

  /**
   * Sends the job's notification through `db`, the caller's transaction. Resolves with
   * `performance.now()` at or before which that transaction began (so pg-boss's lease of the job),
   * or undefined when nothing will be proven: not listening, or a transaction age it cannot read.
   */
  async announce(db: IDatabase, id: string): Promise<number | undefined> {
    if (!this.listening) return undefined;
    // Taken before the statement is sent: the database's clock_timestamp() is read after it, so
    // `sentAt - openMs` is no later than the transaction's start.
    const sentAt = performance.now();
    const { rows } = await db.executeSql(NOTICE_SQL, [this.channel, id]);
    const openMs = Number((rows[0] as { open_ms?: unknown } | undefined)?.open_ms);
    // Negative only if the database's clock stepped back: the age is then unknown.
    if (!Number.isFinite(openMs) || openMs < 0) return undefined;
    return sentAt - openMs;
  }

  /** Stops listening; the watchers claim what waited for a proof. */
  async close(): Promise<void> {
    this.closed = true;
    this.listening = false;
    this.tellUnsure();
    const { handle } = this;
    this.handle = undefined;
    await handle?.close();
  }

  private async open(db: IDatabase): Promise<void> {
    if (typeof db.listen !== 'function') return;
    try {
      const handle = await db.listen(
        this.channel,
        (payload) => this.received(payload),
        // After each (re)subscribe, pg-boss's contract: what was sent meanwhile may be lost.
        () => this.tellUnsure(),
      );
      if (this.closed) await handle.close();
      else {
        this.handle = handle;
        this.listening = true;
      }
    } catch (thrown) {
      const { message } = errorFields(toError(thrown), false);
      this.report(
        new Error(
          `commit notices unavailable, LISTEN failed (${message}): transactional tasks are claimed after the response`,
        ),
      );
    }
  }

  private received(payload: string): void {
    if (!JOB_ID.test(payload)) {
      this.report(new Error('commit notice ignored: its payload is no job id'));
      return;
    }
    for (const watcher of this.watchers) this.tell(() => watcher.committed(payload));
  }

  private tellUnsure(): void {
    for (const watcher of this.watchers) this.tell(() => watcher.unsure());
  }

  /** Called from node-postgres's event: a throw there would be an uncaught exception. */
  private tell(call: () => void): void {
    try {
      call();
    } catch (thrown) {
      this.report(toError(thrown));
    }
  }
}
