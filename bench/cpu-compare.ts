/**
 * In-process cost per request of two apps, without sockets (child process entry, run with
 * --expose-gc).
 *
 * Usage (from run.ts): cpu-compare.ts <batch> <pairs> <warmup> <ref>:<cand> [<ref>:<cand> ...]
 *
 * Requests are injected with light-my-request (no socket), one at a time. One pair is a batch of
 * <batch> requests for each app, and pairs alternate which app goes first (A B, B A, ...). CPU
 * time is process.cpuUsage(), user + system. Each app is built twice (A B B A) and pairs alternate
 * between the two sets, so that the order in which apps were built cannot favour either side.
 *
 * Within a pair the two apps take turns in slices of SLICE requests (a millisecond or two of
 * work). Each pair yields two ratios, reference CPU / candidate CPU:
 *
 *  - `totalRatio`: of the two batches' total CPU time. Noisy on a shared machine: now and then a
 *    single slice costs 4 to 10 times the usual (other tenants on the sibling CPU, a major GC),
 *    and a few such slices on one side move a pair by ±10-20%, even for two identical apps.
 *  - `sliceRatio`: the median of the pair's slice-by-slice ratios. Neighbouring slices run under
 *    the same conditions, so each slice ratio compares like with like, and the median ignores the
 *    spikes. This is the ratio the targets are judged on; the A/A control shows it centred on 1.
 *
 * Each slice ends by waiting for the app's background tasks (`idle()`) and for the injector's
 * own deferred callbacks (settle()), inside the measured span, so deferred work is counted and
 * charged to the app that caused it.
 *
 * Before each slice, outside the measured span, a minor GC empties the young generation; a
 * slice allocates far less than it holds, so no scavenge starts inside a measured span. The
 * injector keeps so many objects alive across a scavenge (about half of what it allocates) that
 * scavenges and the major GCs they lead to were two thirds of all CPU time, landing on whichever
 * app ran at the time. A scavenge costs what survives it, and at a slice boundary no request is
 * in flight: what is dropped is the injector's noise, while each app's allocations are still made
 * inside the measured span.
 */
import './native-stacks';
import { setImmediate as tick } from 'node:timers/promises';
import inject from 'light-my-request';
import { SCENARIOS, type App } from './apps';
import { childMain } from './children';
import { median, pairwise } from './stats';

/** One entry per pair, all arrays paired by index. */
export interface CpuSamples {
  reference: string;
  candidate: string;
  /** Median CPU µs per request of the pair's slices. */
  referenceUs: number[];
  candidateUs: number[];
  /** Median of the pair's slice ratios, reference / candidate. */
  sliceRatio: number[];
  /** Total CPU of the reference's batch / that of the candidate's. */
  totalRatio: number[];
}

interface Pair {
  firstSlices: number[];
  secondSlices: number[];
}

/** Requests per turn within a pair: about a millisecond or two of work. */
export const SLICE = 25;

const REQUEST = { method: 'GET', url: '/' } as const;

declare const gc: (options?: { type: 'minor' }) => void;

/**
 * Lets the deferred work of the slice's requests run: light-my-request's null socket calls back
 * through setImmediate, and those callbacks schedule more. Left alone they would be paid for by
 * the other app's next slice.
 */
async function settle(): Promise<void> {
  for (let turns = 0; turns < 100; turns++) {
    await tick();
    if (!process.getActiveResourcesInfo().includes('Immediate')) return;
  }
}

/** CPU µs spent on `size` requests to `app`, deferred work included. */
async function slice(app: App, size: number): Promise<number> {
  gc({ type: 'minor' });
  const start = process.cpuUsage();
  for (let i = 0; i < size; i++) {
    const response = await inject(app.handler, REQUEST);
    if (response.statusCode !== app.status) {
      throw new Error(`expected ${app.status}, got ${response.statusCode}: ${response.payload}`);
    }
  }
  await app.idle();
  await settle();
  const used = process.cpuUsage(start);
  return used.user + used.system;
}

/** One pair: `size` requests to each app, taking turns; each slice's CPU µs per request. */
async function pair(first: App, second: App, size: number): Promise<Pair> {
  const result: Pair = { firstSlices: [], secondSlices: [] };
  for (let done = 0; done < size; done += SLICE) {
    const n = Math.min(SLICE, size - done);
    result.firstSlices.push((await slice(first, n)) / n);
    result.secondSlices.push((await slice(second, n)) / n);
  }
  return result;
}

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);

async function compare(
  refName: string,
  candName: string,
  size: number,
  pairs: number,
  warmup: number,
): Promise<CpuSamples> {
  if (SCENARIOS[refName] === undefined || SCENARIOS[candName] === undefined) {
    throw new Error(`unknown scenario in ${refName}:${candName}`);
  }
  // Two instances of each app, built A B B A: an app built later runs about 0.4% slower here
  // (an A/A control shows it), so pairs alternate between the instances built A-first and B-first.
  const ref1 = await SCENARIOS[refName].build();
  const cand1 = await SCENARIOS[candName].build();
  const cand2 = await SCENARIOS[candName].build();
  const ref2 = await SCENARIOS[refName].build();
  const instances = (i: number) => (Math.floor(i / 2) % 2 === 0 ? [ref1, cand1] : [ref2, cand2]);
  for (let i = 0; i < warmup * 2; i++) {
    const [ref, cand] = instances(i);
    await pair(ref, cand, Math.ceil(size / 2));
  }
  const samples: CpuSamples = {
    reference: refName,
    candidate: candName,
    referenceUs: [],
    candidateUs: [],
    sliceRatio: [],
    totalRatio: [],
  };
  for (let i = 0; i < pairs; i++) {
    const [ref, cand] = instances(i);
    const refFirst = i % 2 === 0;
    const { firstSlices, secondSlices } = await pair(
      refFirst ? ref : cand,
      refFirst ? cand : ref,
      size,
    );
    const refSlices = refFirst ? firstSlices : secondSlices;
    const candSlices = refFirst ? secondSlices : firstSlices;
    samples.referenceUs.push(median(refSlices));
    samples.candidateUs.push(median(candSlices));
    samples.sliceRatio.push(median(pairwise(refSlices, candSlices, (r, c) => r / c)));
    samples.totalRatio.push(sum(refSlices) / sum(candSlices));
  }
  return samples;
}

async function main(): Promise<CpuSamples[]> {
  const [batch, pairs, warmup, ...comparisons] = process.argv.slice(2);
  const results: CpuSamples[] = [];
  for (const comparison of comparisons) {
    const [ref, cand] = comparison.split(':');
    results.push(await compare(ref, cand, Number(batch), Number(pairs), Number(warmup)));
  }
  return results;
}

childMain(main);
