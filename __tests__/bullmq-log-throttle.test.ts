/**
 * The log of a Redis connection's errors (`ConnectionLog`), on its own with a clock the test
 * moves: each distinct error at most once a minute, the repeats counted into the next line,
 * the count left over logged on close, a bounded memory, and outages still logged once each.
 */
import { ReplyError } from 'ioredis';
import { LOG_MESSAGES } from '../lib';
import { ConnectionLog } from '../lib/bullmq/connection';
import { MAX_REMEMBERED_ERRORS, REPEAT_INTERVAL_MS } from '../lib/repeat-counter';
import { captureLogger, type CapturedLogger } from './support/capture';

const OOM = "OOM command not allowed when used memory > 'maxmemory'.";
const WRONGPASS = 'WRONGPASS invalid username-password pair or user is disabled.';

let log: CapturedLogger;
let now: number;
let connectionLog: ConnectionLog;

beforeEach(() => {
  log = captureLogger();
  now = 1_000;
  connectionLog = new ConnectionLog(log.logger, { queue: 'q', side: 'worker' }, () => now);
});

/** The lines so far as [message, error message, repeats]. */
const lines = () =>
  log.records.map((record) => [
    record.message,
    (record.error as { message: string }).message,
    record.repeats,
  ]);

const reply = (message: string) => new ReplyError(message);
const coded = (message: string, code: string) => Object.assign(new Error(message), { code });

test('the first occurrence of an error is logged at once, with the fields of its side', () => {
  connectionLog.error(reply(WRONGPASS));
  expect(log.records).toEqual([
    expect.objectContaining({
      level: 'error',
      message: LOG_MESSAGES.workerError,
      queue: 'q',
      side: 'worker',
      error: expect.objectContaining({ name: 'ReplyError', message: WRONGPASS }),
    }),
  ]);
  expect(log.records[0]).not.toHaveProperty('repeats');
});

test('out of memory has its own message, without the stack of the reply parser', () => {
  connectionLog.error(reply(`${OOM} script: d96ca626, on @user_script:217.`));
  expect(log.records).toEqual([
    expect.objectContaining({
      level: 'error',
      message: LOG_MESSAGES.redisOutOfMemory,
      error: { name: 'ReplyError', message: `${OOM} script: d96ca626, on @user_script:217.` },
    }),
  ]);
});

test('repeats within a minute are counted, not logged; the first after the minute carries their count', () => {
  connectionLog.error(reply(WRONGPASS));
  for (let i = 0; i < 500; i += 1) {
    now += 100;
    connectionLog.error(reply(WRONGPASS));
  }
  // 50 s have passed: still within the minute.
  expect(lines()).toEqual([[LOG_MESSAGES.workerError, WRONGPASS, undefined]]);

  now = 1_000 + REPEAT_INTERVAL_MS - 1;
  connectionLog.error(reply(WRONGPASS));
  expect(log.records).toHaveLength(1);
  now += 1;
  connectionLog.error(reply(WRONGPASS));
  expect(lines()).toEqual([
    [LOG_MESSAGES.workerError, WRONGPASS, undefined],
    [LOG_MESSAGES.workerError, WRONGPASS, 501],
  ]);
  // The minute starts again from that line.
  now += REPEAT_INTERVAL_MS - 1;
  connectionLog.error(reply(WRONGPASS));
  expect(log.records).toHaveLength(2);
});

test('close() logs one last line per error with repeats untold, with their count, and nothing for the others', () => {
  connectionLog.error(reply(WRONGPASS));
  connectionLog.error(reply(WRONGPASS));
  connectionLog.error(reply(WRONGPASS));
  connectionLog.error(reply(`${OOM} script: a`));
  connectionLog.error(reply('ERR logged once, never repeated'));
  connectionLog.error(reply(`${OOM} script: b`));
  expect(log.records).toHaveLength(3);

  connectionLog.close();
  expect(lines().slice(3)).toEqual([
    [LOG_MESSAGES.workerError, WRONGPASS, 2],
    // The latest of the repeats is shown.
    [LOG_MESSAGES.redisOutOfMemory, `${OOM} script: b`, 1],
  ]);
  // Nothing is left to tell: a second close() adds nothing, and an error afterwards is a first again.
  connectionLog.close();
  expect(log.records).toHaveLength(5);
  connectionLog.error(reply(WRONGPASS));
  expect(lines()[5]).toEqual([LOG_MESSAGES.workerError, WRONGPASS, undefined]);
});

test('distinct errors are counted apart: by code, else by message; OOM replies of every script are one error', () => {
  connectionLog.error(reply(WRONGPASS));
  connectionLog.error(reply('NOSCRIPT No matching script.'));
  connectionLog.error(coded('first wording', 'EX_ONE'));
  connectionLog.error(coded('another wording, same code', 'EX_ONE'));
  connectionLog.error(coded('first wording', 'EX_TWO'));
  connectionLog.error(reply(`${OOM} script: a, on @user_script:217.`));
  connectionLog.error(reply(`${OOM} script: b, on @user_script:119.`));
  connectionLog.error(reply(WRONGPASS));
  expect(lines()).toEqual([
    [LOG_MESSAGES.workerError, WRONGPASS, undefined],
    [LOG_MESSAGES.workerError, 'NOSCRIPT No matching script.', undefined],
    [LOG_MESSAGES.workerError, 'first wording', undefined],
    [LOG_MESSAGES.workerError, 'first wording', undefined],
    [LOG_MESSAGES.redisOutOfMemory, `${OOM} script: a, on @user_script:217.`, undefined],
  ]);
});

test("each error's minute is its own", () => {
  connectionLog.error(reply(WRONGPASS));
  now += 30_000;
  connectionLog.error(reply('NOSCRIPT No matching script.'));
  connectionLog.error(reply(WRONGPASS));
  // A minute after WRONGPASS's line, half a minute after NOSCRIPT's.
  now += 30_000;
  connectionLog.error(reply('NOSCRIPT No matching script.'));
  connectionLog.error(reply(WRONGPASS));
  expect(lines()).toEqual([
    [LOG_MESSAGES.workerError, WRONGPASS, undefined],
    [LOG_MESSAGES.workerError, 'NOSCRIPT No matching script.', undefined],
    [LOG_MESSAGES.workerError, WRONGPASS, 1],
  ]);
});

test(`at most ${MAX_REMEMBERED_ERRORS} errors are remembered: the least recently logged is forgotten, its repeats logged first`, () => {
  connectionLog.error(reply('ERR oldest'));
  connectionLog.error(reply('ERR oldest'));
  connectionLog.error(reply('ERR oldest'));
  for (let i = 1; i < MAX_REMEMBERED_ERRORS; i += 1) connectionLog.error(reply(`ERR number ${i}`));
  expect(log.records).toHaveLength(MAX_REMEMBERED_ERRORS);
  // Still remembered: a repeat is counted.
  connectionLog.error(reply('ERR number 1'));
  expect(log.records).toHaveLength(MAX_REMEMBERED_ERRORS);

  connectionLog.error(reply('ERR one too many'));
  expect(lines().slice(MAX_REMEMBERED_ERRORS)).toEqual([
    [LOG_MESSAGES.workerError, 'ERR oldest', 2],
    [LOG_MESSAGES.workerError, 'ERR one too many', undefined],
  ]);
  // Forgotten, so logged again at once; that in turn forgets 'ERR number 1', whose repeat is told.
  connectionLog.error(reply('ERR oldest'));
  expect(lines().slice(MAX_REMEMBERED_ERRORS + 2)).toEqual([
    [LOG_MESSAGES.workerError, 'ERR number 1', 1],
    [LOG_MESSAGES.workerError, 'ERR oldest', undefined],
  ]);
});

test('a connection error is still logged once per outage, however often, and apart from the minute rule', () => {
  const refused = () => coded('connect ECONNREFUSED 127.0.0.1:6379', 'ECONNREFUSED');
  for (let i = 0; i < 100; i += 1) connectionLog.error(refused());
  connectionLog.ready();
  // A second outage within the same minute is logged again: outages are not throttled.
  connectionLog.error(refused());
  connectionLog.close();
  expect(log.records.map((record) => record.message)).toEqual([
    LOG_MESSAGES.redisError,
    LOG_MESSAGES.redisReady,
    LOG_MESSAGES.redisError,
  ]);
});
