/**
 * The child process of log-faults.test.ts: one unusual logger or transport per run (`SCENARIO`),
 * records logged through the library, then `closeLogger()`. It says on stdout, as one JSON line,
 * what its transports got and how the close ended; the parent reads the real stderr.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import winston from 'winston';
import Transport from 'winston-transport';
import { closeLogger, droppedRecords, safeLog } from '../../lib/logging';

const say = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);
const turn = () => new Promise((resolve) => setImmediate(resolve));
const probe = (logger: winston.Logger, i: number, url = '/pay?token=SECRET') =>
  safeLog(logger, 'error', 'probe', { task: `r${i}`, url });

/** Keeps the tasks of the records it takes, calling back a turn later. */
class Keeping extends Transport {
  readonly got: string[] = [];
  override log(info: { task?: string }, callback: () => void): void {
    if (typeof info.task === 'string') this.got.push(info.task);
    setImmediate(callback);
  }
}

/** A winston-2 transport: `log(level, message, meta, callback)`, wrapped by winston in a LegacyTransportStream. */
class Legacy extends EventEmitter {
  name = 'legacy';
  readonly got: string[] = [];
  constructor(private readonly misbehave: (n: number, self: Legacy) => void) {
    super();
  }
  log(_level: string, _message: string, meta: { task: string }, callback: () => void): void {
    this.misbehave(this.got.length + 1, this);
    this.got.push(meta.task);
    callback();
  }
}

const redact = winston.format((info) => {
  if (typeof info.url === 'string') info.url = info.url.replace(/token=[^&]*/, 'token=[redacted]');
  return info;
});

const scenarios: Record<string, () => Promise<object>> = {
  /** A winston-2 transport emits 'error' (winston's re-pipe of it throws inside the event). */
  async 'legacy-error'() {
    const legacy = new Legacy((n, self) => {
      if (n === 2) setImmediate(() => self.emit('error', new Error('legacy connection lost')));
    });
    const logger = winston.createLogger({ transports: [legacy as never] });
    for (let i = 0; i < 5; i++) {
      probe(logger, i);
      await turn();
    }
    return { got: legacy.got, closed: await closeLogger(logger, { timeoutMs: 1_000 }) };
  },
  /** A winston-2 transport whose log() throws on its 2nd record, then works again. */
  async 'legacy-throws'() {
    let seen = 0;
    const legacy = new Legacy(() => {
      if (++seen === 2) throw new Error('legacy threw once');
    });
    const logger = winston.createLogger({ transports: [legacy as never] });
    for (let i = 0; i < 50; i++) {
      probe(logger, i);
      await turn();
    }
    return { got: legacy.got, closed: await closeLogger(logger, { timeoutMs: 2_000 }) };
  },
  /** The logger's own format returns undefined (not false) for a record it drops, while the transport is busy. */
  async 'format-undefined'() {
    const keeping = new Keeping();
    const dropHealth = winston.format(
      (info) => (info.url === '/health' ? undefined : info) as never,
    )();
    const logger = winston.createLogger({ format: dropHealth, transports: [keeping] });
    for (let i = 0; i < 20; i++) probe(logger, i, '/x');
    safeLog(logger, 'error', 'probe', { task: 'health', url: '/health' });
    for (let i = 20; i < 40; i++) probe(logger, i, '/x');
    return { got: keeping.got, closed: await closeLogger(logger, { timeoutMs: 2_000 }) };
  },
  /** A transport destroyed without an error at its 3rd record; the logger's format redacts. */
  /** A logger made with no transport, its first added after records were logged (and one below its level). */
  async 'transport-added-later'() {
    const logger = winston.createLogger({ level: 'info', format: redact() });
    probe(logger, 0);
    safeLog(logger, 'debug', 'below the level', { task: 'r-debug' });
    probe(logger, 1);
    await turn();
    const keeping = new Keeping();
    logger.add(keeping);
    probe(logger, 2);
    const closed = await closeLogger(logger, { timeoutMs: 1_000 });
    return { got: keeping.got, closed };
  },
  async 'destroyed-quietly'() {
    let seen = 0;
    class Closing extends Keeping {
      override log(info: { task?: string }, callback: () => void): void {
        if (++seen === 3) this.destroy();
        else super.log(info, callback);
      }
    }
    const transport = new Closing();
    const format = winston.format.combine(redact(), winston.format.json());
    const logger = winston.createLogger({ format, transports: [transport] });
    for (let i = 0; i < 10; i++) {
      probe(logger, i);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return { got: transport.got, closed: await closeLogger(logger, { timeoutMs: 2_000 }) };
  },
  /** The redaction is in the transport's own format, and the transport stops acknowledging. */
  async 'transport-redaction'() {
    class Stuck extends Transport {
      override log(): void {}
    }
    const format = winston.format.combine(redact(), winston.format.json());
    const logger = winston.createLogger({
      format: winston.format.json(),
      transports: [new Stuck({ format })],
    });
    for (let i = 0; i < 600; i++) probe(logger, i);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    return {
      closed: await closeLogger(logger, { timeoutMs: 1_000 }),
      dropped: droppedRecords(logger),
    };
  },
  /** A hung transport the app removed and replaced: the close does not wait for it. */
  async 'removed-transport'() {
    class Stuck extends Transport {
      override log(): void {}
    }
    const stuck = new Stuck();
    const keeping = new Keeping();
    const logger = winston.createLogger({ transports: [stuck] });
    probe(logger, 0);
    logger.remove(stuck);
    logger.add(keeping);
    for (let i = 1; i <= 10; i++) probe(logger, i);
    return { got: keeping.got, closed: await closeLogger(logger, { timeoutMs: 3_000 }) };
  },
  /** defaultMeta has a getter that throws (it reads a request's async context, outside it). */
  async 'default-meta-throws'() {
    const als = new AsyncLocalStorage<{ user: string }>();
    const keeping = new Keeping();
    const logger = winston.createLogger({
      defaultMeta: {
        get user() {
          return als.getStore()!.user;
        },
      },
      transports: [keeping],
    });
    let threw = false;
    try {
      probe(logger, 0);
    } catch {
      threw = true;
    }
    return { threw, got: keeping.got, closed: await closeLogger(logger, { timeoutMs: 1_000 }) };
  },
  /** A silenced logger: the library writes nothing either, before or after the close. */
  async silent() {
    const logger = winston.createLogger({
      silent: true,
      transports: [new winston.transports.Console()],
    });
    probe(logger, 0);
    const closed = await closeLogger(logger);
    probe(logger, 1);
    return { closed };
  },
};

void scenarios[process.env.SCENARIO!]().then((result) => {
  say(result);
  process.exit(0);
});
