/**
 * Guards one transport of a winston logger the library writes to, so that nothing the transport
 * does can crash the process or lose a record unseen. Its `log()` or `_write()` that throws, its
 * callback called with an error, its format that throws, an `'error'` event, a destroyed or
 * closed stream: each happens inside winston's stream machinery, often in a later turn with no
 * frame of the library on the stack, where it would be an uncaught exception. Here a record the
 * transport fails on goes to stderr instead, formatted as the transport would have formatted it;
 * a transport that failed for good is bypassed, and what winston still holds for it, or gives it
 * later, goes to stderr too. Records it takes are acknowledged to the logger's guard, which tells
 * a slow logger from a stuck one.
 */
import {
  formatLine,
  isRecord,
  lineOf,
  minimalLine,
  MESSAGE,
  LEVEL,
  type Format,
  type Info,
} from './log-format';
import { afterWrites, heldWrites, waitingOn } from './stream-backlog';

/** What a transport's guard reports to, and asks of, the guard of its logger. */
export interface TransportOwner {
  /** Writes a line to stderr for the logger (counted there if it has to be dropped). */
  spill(line: string): void;
  /** True, having counted one dropped record, when stderr can take no more now (full, or past a close's deadline). */
  dropInstead(): boolean;
  /** The transport acknowledged a record. */
  progress(): void;
  /** The transport failed (or, with `forGood`, failed for good): said once on stderr. */
  transportFailed(guard: TransportGuard, error: unknown, forGood: boolean): void;
  /** The transport failed for good, and winston may have unpiped it. */
  transportDied(guard: TransportGuard): void;
  /** A format threw: said once on stderr. */
  formatFailed(error: unknown): void;
  /** `closeLogger()` has ended the logger: its transports are finishing, not failing. */
  readonly ended: boolean;
  /** Records the logger as a whole gave to stderr (a stuck logger's, a close's): not delivered again. */
  readonly spilledForAll: WeakSet<object>;
}

/** The part of a winston transport the guard wraps and reads. */
export interface GuardedTransport {
  name?: string;
  format?: Format;
  write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean;
  log?(info: Info, callback: (error?: unknown) => void): unknown;
  logv?(infos: Array<{ chunk: Info }>, callback: (error?: unknown) => void): unknown;
  _write?(chunk: unknown, encoding: unknown, callback: (error?: unknown) => void): void;
  _writev?: unknown;
  _accept?(write: { chunk: Info }): boolean;
  on?(event: string, listener: () => void): unknown;
}

/** How long a transport that failed for good has to acknowledge the records it was given. */
export const IN_FLIGHT_GRACE_MS = 1_000;

export class TransportGuard {
  /** Failed for good ('error', destroyed, closed): what is written to it goes to stderr instead. */
  dead = false;
  /** The app removed it from the logger: it is no longer the guard's concern. */
  removed = false;
  /** Said on stderr already. */
  noticed = false;
  /** Records handed to `log()` and not yet acknowledged. */
  private readonly inFlight = new Set<Pending>();
  /** Records ever handed to `log()`: they are no longer the transport's buffer to give away. */
  private readonly given = new WeakSet<object>();
  /** Records already written to stderr for this transport. */
  private readonly spilled = new WeakSet<object>();
  private whenAcknowledged: Array<() => void> = [];
  /** The transport's own format, as it was: what its records on stderr are formatted with. */
  private readonly format: Format | undefined;
  /** For winston's Console transport: which stream a record goes to. */
  private readonly console: ConsoleStreams | undefined;

  constructor(
    readonly transport: GuardedTransport,
    private readonly owner: TransportOwner,
  ) {
    this.format = transport.format;
    this.console = consoleStreams(transport);
    this.wrap();
  }

  get name(): string {
    const name = this.transport.name;
    return typeof name === 'string' ? name : 'transport';
  }

  /** Holds nothing: no record in its buffer, none given to `log()` and not acknowledged. */
  idle(): boolean {
    return this.inFlight.size === 0 && waitingOn(this.transport) === 0;
  }

  /** Resolves once every record given to `log()` has been acknowledged (or, once it failed, written to stderr). */
  acknowledgedAll(): Promise<void> {
    if (this.inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.whenAcknowledged.push(resolve));
  }

  /**
   * The transport failed for good: it is bypassed from now on, and what it was holding goes to
   * stderr: at once the records waiting in its buffer, and after `IN_FLIGHT_GRACE_MS` those it
   * was given and has not acknowledged (a transport that failed may still finish writing them).
   */
  die(error: unknown): void {
    if (this.dead) return;
    this.dead = true;
    this.owner.transportFailed(this, error, true);
    this.spillBuffered();
    // A close waiting for the acknowledgements gets none from here on.
    if (this.whenAcknowledged.length > 0) this.spillInFlight();
    else if (this.inFlight.size > 0) setTimeout(() => this.spillInFlight(), IN_FLIGHT_GRACE_MS);
    this.owner.transportDied(this);
  }

  /**
   * What the transport holds at a close that timed out. The records in its buffer, never handed
   * to `log()`, go to stderr. Those it was given and has not acknowledged are in doubt: a
   * transport may write a record before it calls back (winston's File transport calls back only
   * once its stream has drained), so a copy on stderr could be a second one. They are counted,
   * for the close's notice, and left; except those of a Console transport whose bytes have
   * visibly left stdout, which are acknowledged, and those of a transport that failed for good,
   * which go to stderr. Returns how many are in doubt.
   */
  spillHeld(): number {
    let inDoubt = 0;
    if (this.dead) this.spillInFlight();
    else {
      if (this.console !== undefined) this.settleConsoleWrites(this.console);
      inDoubt = this.inFlight.size;
      for (const pending of this.inFlight) pending.done = true;
      this.inFlight.clear();
      this.wakeIfAcknowledged();
    }
    this.spillBuffered();
    return inDoubt;
  }

  /**
   * A record that reached no transport (the logger's guard gives it to stderr): written once for
   * this transport, as this transport would have written it, if it takes the record's level.
   */
  spillCopy(info: Info): void {
    if (!this.accepts(info) || this.owner.dropInstead()) return;
    this.spilled.add(tagOf(info));
    const line = formatLine(info, this.format);
    if (line !== undefined) this.owner.spill(line);
  }

  private spillBuffered(): void {
    for (const chunk of heldWrites(this.transport)) {
      if (isRecord(chunk) && !this.given.has(tagOf(chunk))) this.spillUnformatted(chunk);
    }
  }

  private spillInFlight(): void {
    for (const pending of this.inFlight) {
      pending.done = true;
      this.spillOnce(pending.info, () => lineOf(pending.info));
    }
    this.inFlight.clear();
    this.wakeIfAcknowledged();
  }

  /**
   * A Console transport's records in flight are in Node's stdout (or stderr) buffer, or have left
   * it and wait only for their callback. Those whose bytes have left (the oldest: the last
   * `writableLength` bytes are still held) are acknowledged.
   */
  private settleConsoleWrites(console: ConsoleStreams): void {
    const pendings = [...this.inFlight];
    const held = new Map<object, number>();
    for (let i = pendings.length - 1; i >= 0; i--) {
      const stream = console.streamFor(pendings[i].info);
      const left = held.get(stream) ?? stream.writableLength ?? 0;
      const line = pendings[i].info[MESSAGE];
      held.set(stream, left - (typeof line === 'string' ? Buffer.byteLength(line) + 1 : 0));
      if (left <= 0) pendings[i].acknowledge();
    }
  }

  /** A record the transport never formatted: formatted now, as it would have been, if it takes that level. */
  private spillUnformatted(chunk: Info): void {
    if (!this.accepts(chunk)) return;
    this.spillOnce(chunk, () => formatLine(chunk, this.format));
  }

  private spillOnce(info: Info, line: () => string | undefined): void {
    const tag = tagOf(info);
    if (this.spilled.has(tag) || this.owner.spilledForAll.has(tag)) return;
    this.spilled.add(tag);
    if (this.owner.dropInstead()) return;
    const text = line();
    if (text !== undefined) this.owner.spill(text);
  }

  private alreadySpilled(info: Info): boolean {
    const tag = tagOf(info);
    return this.spilled.has(tag) || this.owner.spilledForAll.has(tag);
  }

  /** Would this transport write the record (its level, `silent`, the exception rule)? winston-transport's own rule. */
  private accepts(info: Info): boolean {
    const accept = this.transport._accept;
    if (typeof accept !== 'function') return true;
    try {
      return accept.call(this.transport, { chunk: info });
    } catch {
      return true;
    }
  }

  private wrap(): void {
    const transport = this.transport;
    const write = transport.write;
    transport.write = (chunk, encoding, callback) => {
      const done = typeof encoding === 'function' ? encoding : callback;
      // A record only: winston passes on whatever a logger's format returns, and `undefined` (a
      // filter that forgot to return false) would throw inside the transport and wedge it.
      if (!isRecord(chunk) || this.dead || this.alreadySpilled(chunk)) {
        if (this.dead && isRecord(chunk)) this.spillUnformatted(chunk);
        if (typeof done === 'function') process.nextTick(done);
        return true;
      }
      try {
        return write.call(transport, chunk, encoding, callback);
      } catch (error) {
        this.die(error);
        return true;
      }
    };
    const _write = transport._write;
    if (typeof _write === 'function') {
      // A `_write` that throws (a winston-2 transport's `log()`, a transport of its own kind)
      // would leave the stream waiting forever for a callback: the record goes to stderr, and
      // the transport gets the next one.
      transport._write = (chunk, encoding, callback) => {
        let called = false;
        const once = (error?: unknown) => {
          if (called) return;
          called = true;
          this.afterCallback(callback, error);
        };
        try {
          _write.call(transport, chunk, encoding, once);
        } catch (error) {
          if (called) this.owner.transportFailed(this, error, false);
          else {
            this.failedOn(chunk, error, true);
            once();
          }
        }
      };
    }
    // One record at a time: winston-transport's batch path tells the stream a batch is done as
    // soon as it has handed each record to `log()`, so 'finish' could come while they are
    // still being written, and a failure in the middle of a batch could not be told apart.
    // A transport that batches on purpose (`logv`) keeps it.
    if (typeof transport.logv !== 'function') transport._writev = null;
    const log = transport.log;
    if (typeof log === 'function') {
      transport.log = (info, callback) => this.log(log, transport, info, callback);
    }
    const logv = transport.logv;
    if (typeof logv === 'function') {
      transport.logv = (infos, callback) => this.logBatch(logv, transport, infos, callback);
    }
    const format = this.format;
    if (format !== undefined && typeof format.transform === 'function') {
      // Returning false is how a format filters a record: winston-transport then simply goes on,
      // where a throw would escape as an uncaught exception.
      const guarded = Object.create(format) as Format;
      guarded.transform = (info, options) => {
        try {
          return format.transform(info, options);
        } catch (error) {
          this.owner.formatFailed(error);
          if (isRecord(info)) this.spillOnce(info, () => minimalLine(info));
          return false;
        }
      };
      transport.format = guarded;
    }
    // A stream that closed without an error (destroy()) takes nothing more, and winston unpipes it.
    transport.on?.('close', () => {
      if (!this.dead && !this.removed && !this.owner.ended)
        this.die(new Error(`the transport "${this.name}" closed`));
    });
  }

  private log(
    log: NonNullable<GuardedTransport['log']>,
    self: GuardedTransport,
    info: Info,
    callback: ((error?: unknown) => void) | undefined,
  ): unknown {
    if (this.alreadySpilled(info)) return callback?.();
    if (this.dead) {
      this.spillOnce(info, () => lineOf(info));
      return callback?.();
    }
    this.given.add(tagOf(info));
    const pending: Pending = { info, done: false, acknowledge: () => acknowledged() };
    this.inFlight.add(pending);
    const acknowledged = (error?: unknown) => {
      if (pending.done) return;
      pending.done = true;
      this.inFlight.delete(pending);
      if (error != null) this.failedOn(info, error, false);
      else this.owner.progress();
      this.wakeIfAcknowledged();
      // Never with the error: the record went to stderr, and winston would stop using the transport.
      if (callback !== undefined) this.afterCallback(callback, undefined);
    };
    const console = this.console;
    const done =
      console === undefined
        ? acknowledged
        : (error?: unknown) => afterWrites(console.streamFor(info), () => acknowledged(error));
    try {
      return log.call(self, info, done);
    } catch (error) {
      if (!pending.done) done(error);
      else this.owner.transportFailed(this, error, false); // threw after acknowledging
      return undefined;
    }
  }

  private logBatch(
    logv: NonNullable<GuardedTransport['logv']>,
    self: GuardedTransport,
    infos: Array<{ chunk: Info }>,
    callback: ((error?: unknown) => void) | undefined,
  ): unknown {
    const batch = infos.filter((write) => !this.alreadySpilled(write.chunk));
    if (this.dead || batch.length === 0) {
      for (const { chunk } of batch) this.spillOnce(chunk, () => lineOf(chunk));
      return callback?.();
    }
    const pendings = batch.map(({ chunk }): Pending => {
      this.given.add(tagOf(chunk));
      const pending: Pending = { info: chunk, done: false, acknowledge: () => done() };
      this.inFlight.add(pending);
      return pending;
    });
    let settled = false;
    const done = (error?: unknown) => {
      if (settled) return;
      settled = true;
      for (const pending of pendings) {
        if (pending.done) continue;
        pending.done = true;
        this.inFlight.delete(pending);
        if (error != null) this.spillOnce(pending.info, () => lineOf(pending.info));
      }
      if (error != null) this.owner.transportFailed(this, error, false);
      else this.owner.progress();
      this.wakeIfAcknowledged();
      if (callback !== undefined) this.afterCallback(callback, undefined);
    };
    try {
      return logv.call(self, batch, done);
    } catch (error) {
      if (!settled) done(error);
      return undefined;
    }
  }

  /**
   * Calls the stream's callback. It runs the stream's next write at once; what throws there (a
   * transport whose state is broken) would otherwise be lost, with the stream waiting forever.
   */
  private afterCallback(callback: (error?: unknown) => void, error: unknown): void {
    try {
      callback(error);
    } catch (thrown) {
      this.die(thrown);
    }
  }

  /** The transport failed on this record (and may take the next): the record goes to stderr. */
  private failedOn(info: unknown, error: unknown, unformatted: boolean): void {
    this.owner.transportFailed(this, error, false);
    if (!isRecord(info)) return;
    if (unformatted) this.spillUnformatted(info);
    else this.spillOnce(info, () => lineOf(info));
  }

  private wakeIfAcknowledged(): void {
    if (this.inFlight.size > 0 || this.whenAcknowledged.length === 0) return;
    const waiters = this.whenAcknowledged;
    this.whenAcknowledged = [];
    for (const wake of waiters) wake();
  }
}

interface Pending {
  readonly info: Info;
  done: boolean;
  /** Acknowledges it now, as its transport would have. */
  readonly acknowledge: () => void;
}

/**
 * winston's Console transport acknowledges a record as soon as it has handed it to Node's
 * stdout or stderr, which, when they are pipes, hold whatever their reader has not taken, in
 * memory and without bound, and lose it at `process.exit()`. Its records are acknowledged only
 * once that stream has handed them on, so that a stalled pipe shows as a transport that takes
 * no record, and the logger's bounds apply.
 */
interface ConsoleStreams {
  streamFor(info: Info): NodeJS.WritableStream & { writableLength?: number };
}

function consoleStreams(transport: GuardedTransport): ConsoleStreams | undefined {
  const candidate = transport as GuardedTransport & {
    _consoleLog?: unknown;
    stderrLevels?: Record<string, boolean>;
    consoleWarnLevels?: Record<string, boolean>;
  };
  if (typeof candidate._consoleLog !== 'function' || typeof candidate.stderrLevels !== 'object')
    return undefined;
  return {
    streamFor(info) {
      const level = info[LEVEL] as string;
      const toStderr =
        candidate.stderrLevels?.[level] === true || candidate.consoleWarnLevels?.[level] === true;
      return toStderr ? process.stderr : process.stdout;
    },
  };
}

/** A record's identity across the copies winston makes of it (`Object.assign` copies symbols). */
const RECORD = Symbol('express-background-tasks.record');

/** The record's tag, given to it the first time it is seen. */
export function tagOf(info: Info): object {
  let tag = info[RECORD];
  if (typeof tag !== 'object' || tag === null) {
    tag = {};
    try {
      Object.defineProperty(info, RECORD, { value: tag, enumerable: true, configurable: true });
    } catch {
      // a frozen record: it is tracked by itself
      return info;
    }
  }
  return tag as object;
}
