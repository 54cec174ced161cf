/**
 * Latency and throughput over real HTTP on loopback. Each scenario's server runs in its own child
 * process (bench/server.ts), on 127.0.0.1 and a free port; autocannon drives it from this process.
 * All servers start and are warmed up first. Then each comparison loads its two servers one at a
 * time, A B, B A, A B, ... (`rounds` pairs of `duration` seconds each; one more pair of twice as
 * long for the comparisons marked `long`): the two runs of a pair are
 * seconds apart, so a change in the machine's load hits both alike. Ratios are taken within each
 * pair; the report gives their median. Besides autocannon's figures, each run records the server
 * process's CPU time per request (read over IPC before the run and just after it): the server's
 * own cost, less dependent than req/s on how the two CPUs were shared with autocannon.
 */
import type { ChildProcess } from 'node:child_process';
import autocannon from 'autocannon';
import { SCENARIOS } from './apps';
import { forkScript } from './children';

export interface HttpSample {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  /** The server process's CPU time (user + system) per request answered, µs. */
  serverCpuUs: number;
}

export interface HttpOptions {
  rounds: number;
  connections: number;
  duration: number;
  warmup: number;
}

/** One comparison's runs, paired by index. */
export interface HttpPairs {
  reference: string;
  candidate: string;
  referenceRuns: HttpSample[];
  candidateRuns: HttpSample[];
}

interface Server {
  name: string;
  port: number;
  child: ChildProcess;
}

function startServer(name: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    // 'bare#2' is a second, separate server of scenario 'bare' (the HTTP A/A control).
    const child = forkScript('server.ts', [name.split('#')[0]]);
    child.once('message', (message) =>
      resolve({ name, child, port: (message as { port: number }).port }),
    );
    child.once('exit', (code) =>
      reject(new Error(`server ${name} exited (${code}) before listening`)),
    );
  });
}

/** The server process's CPU time so far, µs. */
function serverCpu(server: Server): Promise<number> {
  return new Promise((resolve) => {
    const onMessage = (message: unknown) => {
      const cpu = (message as { cpu?: number }).cpu;
      if (typeof cpu !== 'number') return;
      server.child.off('message', onMessage);
      resolve(cpu);
    };
    server.child.on('message', onMessage);
    server.child.send('cpu');
  });
}

/**
 * After a run, the time left for deferred work before the server's CPU time is read: 250 ms for
 * a scenario whose tasks take 200 ms, a moment for the others (their tasks run as responses end).
 */
function settleMs(server: Server): number {
  return SCENARIOS[server.name.split('#')[0]].httpOnly ? 250 : 20;
}

async function load(server: Server, connections: number, duration: number): Promise<HttpSample> {
  const cpuBefore = await serverCpu(server);
  const result = await autocannon({
    url: `http://127.0.0.1:${server.port}/`,
    connections,
    duration,
  });
  if (result.errors > 0 || result.timeouts > 0) {
    throw new Error(`${server.name}: ${result.errors} errors, ${result.timeouts} timeouts`);
  }
  await new Promise((resolve) => setTimeout(resolve, settleMs(server)));
  const cpu = (await serverCpu(server)) - cpuBefore;
  return {
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    serverCpuUs: cpu / result.requests.total,
  };
}

/** Runs each [reference, candidate] comparison as alternating pairs of runs. */
export async function runHttp(
  comparisons: Array<{ reference: string; candidate: string; long?: boolean }>,
  options: HttpOptions,
  progress: (line: string) => void,
): Promise<HttpPairs[]> {
  const names = [...new Set(comparisons.flatMap((c) => [c.reference, c.candidate]))];
  const servers = new Map((await Promise.all(names.map(startServer))).map((s) => [s.name, s]));
  try {
    if (options.warmup > 0) {
      for (const server of servers.values())
        await load(server, options.connections, options.warmup);
    }
    const results: HttpPairs[] = [];
    for (const { reference, candidate, long } of comparisons) {
      const pairs: HttpPairs = { reference, candidate, referenceRuns: [], candidateRuns: [] };
      const rounds = long ? options.rounds + 1 : options.rounds;
      const duration = long ? options.duration * 2 : options.duration;
      for (let round = 0; round < rounds; round++) {
        const refFirst = round % 2 === 0;
        for (const name of refFirst ? [reference, candidate] : [candidate, reference]) {
          const sample = await load(servers.get(name)!, options.connections, duration);
          (name === reference ? pairs.referenceRuns : pairs.candidateRuns).push(sample);
        }
      }
      const last = (runs: HttpSample[]) => runs[runs.length - 1];
      progress(
        `  http ${candidate} vs ${reference}: last pair ${Math.round(last(pairs.candidateRuns).requestsPerSecond)} vs ` +
          `${Math.round(last(pairs.referenceRuns).requestsPerSecond)} req/s, p99 ${last(pairs.candidateRuns).p99} vs ` +
          `${last(pairs.referenceRuns).p99} ms`,
      );
      results.push(pairs);
    }
    return results;
  } finally {
    for (const server of servers.values()) server.child.kill();
  }
}
