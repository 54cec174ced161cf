/**
 * What the pg-boss producer and worker share: the `connectionString` or `boss`, `queueName` and
 * `deadLetterQueue` options with their checks, and the instance itself: made (or taken) once,
 * started on first use, with the queue and its dead-letter queue created, and its 'error' events
 * logged at most once a minute each.
 */
import { performance } from 'node:perf_hooks';
import { PgBoss } from 'pg-boss';
import type { Logger } from 'winston';
import { RepeatCounter } from '../repeat-counter';
import { LOG_MESSAGES, safeLog } from '../logging';
import { fail } from '../options';
import { errorFields, readProperty, toError } from '../thrown';

/** The options both `pgBossDurable()` and `startWorker()` take, and must agree on. */
export interface PgBossLocation {
  /** Where PostgreSQL is: `postgres://user:password@host:port/database`. This or `boss` is required. */
  connectionString?: string;
  /**
   * A pg-boss instance of the application's (`new PgBoss(…)`), started or not: it is started on
   * first use, and stopping it stays the application's. This or `connectionString` is required.
   */
  boss?: PgBoss;
  /** The pg-boss queue the web processes write to and the workers take from. Default: `'background-tasks'`. */
  queueName?: string;
  /** The queue that receives a job whose last attempt failed. Default: `` `${queueName}.dead-letter` ``. */
  deadLetterQueue?: string;
}

export interface ResolvedLocation {
  readonly connectionString: string | undefined;
  readonly boss: PgBoss | undefined;
  readonly queueName: string;
  readonly deadLetterQueue: string;
}

export const DEFAULT_QUEUE_NAME = 'background-tasks';
/** pg-boss's rule for queue names. */
const QUEUE_NAME = /^[\w.\-/]+$/;

/** Checks the shared options and fills in their defaults. */
export function resolveLocation(where: string, given: PgBossLocation): ResolvedLocation {
  const { connectionString, boss, queueName = DEFAULT_QUEUE_NAME } = given;
  if ((connectionString === undefined) === (boss === undefined)) {
    throw new TypeError(
      `${where}(): give exactly one of the options "connectionString" and "boss"`,
    );
  }
  // The string is not shown in the message: it may hold a password.
  if (
    connectionString !== undefined &&
    (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\/./.test(connectionString))
  ) {
    throw new TypeError(
      `${where}(): option "connectionString" must be a postgres:// or postgresql:// URL`,
    );
  }
  const bossLike = boss as Partial<Record<'start' | 'send' | 'work', unknown>> | undefined;
  if (
    boss !== undefined &&
    (typeof bossLike?.start !== 'function' ||
      typeof bossLike.send !== 'function' ||
      typeof bossLike.work !== 'function')
  )
    fail(where, 'boss', 'a PgBoss instance', boss);
  const name = (option: string, value: unknown): string => {
    if (typeof value !== 'string' || !QUEUE_NAME.test(value))
      fail(where, option, 'a queue name of letters, digits, "_", "-", "." and "/"', value);
    return value;
  };
  const deadLetterQueue = name(
    'deadLetterQueue',
    given.deadLetterQueue ?? `${name('queueName', queueName)}.dead-letter`,
  );
  if (deadLetterQueue === queueName)
    fail(where, 'deadLetterQueue', 'another queue than queueName', deadLetterQueue);
  return { connectionString, boss, queueName, deadLetterQueue };
}

/** The instance of one producer or worker, started once, with its queues. */
export class BossConnection {
  readonly boss: PgBoss;
  private readonly own: boolean;
  private starting: Promise<PgBoss> | undefined = undefined;
  private readonly errors: RepeatCounter;

  /**
   * @param options Passed to `new PgBoss()` when it is made here (the worker's polling choices).
   */
  constructor(
    readonly location: ResolvedLocation,
    logger: Logger,
    side: 'producer' | 'worker',
    options: object = {},
  ) {
    this.own = location.boss === undefined;
    this.boss =
      location.boss ??
      // pg-boss's own spans are off: the library makes the producer and consumer spans.
      new PgBoss({
        connectionString: location.connectionString,
        openTelemetry: { enabled: false },
        ...options,
      });
    const fields = { queue: location.queueName, side };
    this.errors = new RepeatCounter(
      (error, repeats) =>
        safeLog(logger, 'error', LOG_MESSAGES.workerError, {
          ...fields,
          error: errorFields(error),
          ...(repeats > 0 && { repeats }),
        }),
      () => performance.now(),
    );
    // Without a listener an 'error' event would be thrown: pg-boss emits one for each failed poll.
    this.boss.on('error', (thrown: unknown) => this.report(bossError(thrown)));
  }

  /** Logs an error of this instance, at most once a minute for each kind (its `code`, else its message). */
  report(error: Error): void {
    const code = readProperty(error, 'code');
    this.errors.offer(typeof code === 'string' ? code : errorFields(error, false).message, error);
  }

  /** The started instance, with the queue and its dead-letter queue; a failed start is tried again next time. */
  ready(): Promise<PgBoss> {
    this.starting ??= this.start().catch((error: unknown) => {
      this.starting = undefined;
      throw error;
    });
    return this.starting;
  }

  /** Stops an instance made here (an application's own is left running), then logs the repeats untold. */
  async close(): Promise<void> {
    // Stopped first, so that the errors its stop emits are among the repeats told.
    try {
      if (this.own) await this.boss.stop({ graceful: true });
    } finally {
      this.errors.flush();
    }
  }

  private async start(): Promise<PgBoss> {
    const { boss } = this;
    await boss.start();
    const { queueName, deadLetterQueue } = this.location;
    await boss.createQueue(deadLetterQueue);
    await boss.createQueue(queueName, { deadLetter: deadLetterQueue });
    return boss;
  }
}

/**
 * What pg-boss emitted, as an Error: a failed poll comes as a plain copy of its error
 * (`{ ...error, message, stack, queue, worker }`), which is made an Error again, with its name,
 * stack and `code`, rather than logged as a thrown non-Error.
 */
function bossError(thrown: unknown): Error {
  const message = readProperty(thrown, 'message');
  if (thrown instanceof Error || typeof message !== 'string') return toError(thrown);
  const error = new Error(message) as Error & { code?: unknown };
  const name = readProperty(thrown, 'name');
  const stack = readProperty(thrown, 'stack');
  if (typeof name === 'string') error.name = name;
  if (typeof stack === 'string') error.stack = stack;
  error.code = readProperty(thrown, 'code');
  return error;
}
