/**
 * Cost of the payload check at add() (child process entry, run with --expose-gc), in two parts:
 * - issue 9's: copyPayload() against `JSON.parse(JSON.stringify(payload))` on a 5-million-number
 *   array and a one-million-key object, with no size limit and with a limit of exactly the
 *   payload's size (the limit that makes the check count every byte and still accept);
 * - issue 16's: payloads as a request body would carry them (10 MB strings of lone surrogates,
 *   `é`, emoji, ASCII and mixed text, a 100 MiB string, 50 million lone surrogates, the
 *   one-million-key object), checked
 *   against `JSON.parse` of that body: with the default 1 MiB limit (refused), with a limit of
 *   exactly their size, and with none. The README promises the check never costs more than the
 *   parse did: a payload taken from a body cannot block the loop for longer than parsing it.
 *
 * Each run times the three in a rotating order, each after a forced GC so that none pays for
 * another's garbage, in CPU time (user + system, all threads): other processes on a shared
 * machine disturb it less than wall time. The report takes the ratio check / round trip per run.
 *
 * Usage: payload-check.ts <runs> <scale> (1: issue 9's sizes; --quick runs a tenth of them)
 */
import './native-stacks';
import { copyPayload } from '../lib/json-payload';
import { childMain } from './children';

export interface PayloadCheckRow {
  label: string;
  jsonBytes: number;
  /** What the check is held against: JSON's round trip of the payload, or JSON.parse of its body. */
  reference: 'round trip' | 'parse';
  /** CPU milliseconds, one per run, of the reference and of each limit. */
  referenceMs: number[];
  noLimit: number[];
  exactLimit: number[];
  /** With the default 1 MiB limit: issue 16's rows only (all refused there). */
  defaultLimit?: number[];
}

const DEFAULT_LIMIT = 1024 * 1024;

const gc = (globalThis as { gc?: () => void }).gc;

function cpuMs(run: () => unknown): number {
  gc!();
  const before = process.cpuUsage();
  run();
  const { user, system } = process.cpuUsage(before);
  return (user + system) / 1000;
}

function measure(
  label: string,
  payload: unknown,
  runs: number,
  reference: PayloadCheckRow['reference'],
): PayloadCheckRow {
  const json = JSON.stringify(payload);
  const jsonBytes = Buffer.byteLength(json);
  if (JSON.stringify(copyPayload('bench', payload, jsonBytes)) !== json)
    throw new Error(`${label}: the copy differs from the payload`);
  const row: PayloadCheckRow = {
    label,
    jsonBytes,
    reference,
    referenceMs: [],
    noLimit: [],
    exactLimit: [],
  };
  const modes: [number[], () => unknown][] = [
    [
      row.referenceMs,
      reference === 'parse' ? () => JSON.parse(json) : () => JSON.parse(JSON.stringify(payload)),
    ],
    [row.noLimit, () => copyPayload('bench', payload, Infinity)],
    [row.exactLimit, () => copyPayload('bench', payload, jsonBytes)],
  ];
  if (reference === 'parse') {
    row.defaultLimit = [];
    modes.push([
      row.defaultLimit,
      () => refused(() => copyPayload('bench', payload, DEFAULT_LIMIT)),
    ]);
  }
  for (const [, run] of modes) run(); // warm-up
  for (let i = 0; i < runs; i++) {
    for (let m = 0; m < modes.length; m++) {
      const [timings, run] = modes[(i + m) % modes.length];
      timings.push(cpuMs(run));
    }
  }
  return row;
}

/** Runs a check that must refuse its payload. */
function refused(check: () => unknown): void {
  try {
    check();
  } catch (error) {
    if (/is too large/.test((error as Error).message)) return;
    throw error;
  }
  throw new Error('the payload was not refused at the default limit');
}

async function main(): Promise<PayloadCheckRow[]> {
  if (gc === undefined) throw new Error('run with --expose-gc');
  const runs = Number(process.argv[2]);
  const scale = Number(process.argv[3]);
  const items = 5_000_000 * scale;
  const keys = 1_000_000 * scale;
  const object: Record<string, number> = {};
  for (let i = 0; i < keys; i++) object[`key${i}`] = i;
  const count = (n: number) => n.toLocaleString('en-US');
  /** A string whose JSON body is about `bytes`, of `unit` repeated. */
  const body = (unit: string, bytes: number) => ({
    text: unit.repeat(Math.round(bytes / (Buffer.byteLength(JSON.stringify(unit)) - 2))),
  });
  const tenMB = 10_000_000 * scale;
  const rows = [
    measure(
      `array of ${count(items)} numbers`,
      Array.from({ length: items }, (_, i) => i),
      runs,
      'round trip',
    ),
    measure(`object of ${count(keys)} keys`, object, runs, 'round trip'),
  ];
  for (const [name, unit] of [
    ['lone surrogates', '\ud800'],
    ['é', 'é'],
    ['emoji', '😀'],
    ['ASCII', 'a'],
    // Prose with non-ASCII characters and a newline per line: the costliest string to count.
    [
      'mixed text (é, emoji, a newline every 100 characters)',
      `${'é😀 a line of prose'.repeat(5)}\n`,
    ],
  ]) {
    rows.push(measure(`a string of ${name}, in a 10 MB body`, body(unit, tenMB), runs, 'parse'));
  }
  const lone = 50_000_000 * scale;
  rows.push(
    // Issue 16's 100 MiB string, of ASCII: of `\u0001` its JSON (600 MB) is past V8's longest string.
    measure(
      `a string of ASCII, in a ${count(Math.round(100 * scale))} MiB body`,
      { text: 'a'.repeat(100 * 1_048_576 * scale) },
      runs,
      'parse',
    ),
    measure(`${count(lone)} lone surrogates`, { text: '\ud800'.repeat(lone) }, runs, 'parse'),
    measure(`object of ${count(keys)} keys, as a body`, object, runs, 'parse'),
  );
  return rows;
}

childMain(main);
