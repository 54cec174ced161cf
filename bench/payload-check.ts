/**
 * Cost of the payload check at add() (child process entry, run with --expose-gc): copyPayload()
 * against `JSON.parse(JSON.stringify(payload))` on the payloads of issue 9, a 5-million-number
 * array and a one-million-key object, with no size limit and with a limit of exactly the
 * payload's size (the limit that makes the check count every byte and still accept).
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
  /** CPU milliseconds, one per run. */
  roundTrip: number[];
  noLimit: number[];
  exactLimit: number[];
}

const gc = (globalThis as { gc?: () => void }).gc;

function cpuMs(run: () => unknown): number {
  gc!();
  const before = process.cpuUsage();
  run();
  const { user, system } = process.cpuUsage(before);
  return (user + system) / 1000;
}

function measure(label: string, payload: unknown, runs: number): PayloadCheckRow {
  const json = JSON.stringify(payload);
  const jsonBytes = Buffer.byteLength(json);
  if (JSON.stringify(copyPayload('bench', payload, jsonBytes)) !== json)
    throw new Error(`${label}: the copy differs from the payload`);
  const row: PayloadCheckRow = { label, jsonBytes, roundTrip: [], noLimit: [], exactLimit: [] };
  const modes: [number[], () => unknown][] = [
    [row.roundTrip, () => JSON.parse(JSON.stringify(payload))],
    [row.noLimit, () => copyPayload('bench', payload, Infinity)],
    [row.exactLimit, () => copyPayload('bench', payload, jsonBytes)],
  ];
  for (const [, run] of modes) run(); // warm-up
  for (let i = 0; i < runs; i++) {
    for (let m = 0; m < modes.length; m++) {
      const [timings, run] = modes[(i + m) % modes.length];
      timings.push(cpuMs(run));
    }
  }
  return row;
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
  return [
    measure(
      `array of ${count(items)} numbers`,
      Array.from({ length: items }, (_, i) => i),
      runs,
    ),
    measure(`object of ${count(keys)} keys`, object, runs),
  ];
}

childMain(main);
