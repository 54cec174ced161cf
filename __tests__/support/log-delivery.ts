/**
 * Runs one case of log-delivery-child.ts in a real child process and counts where each record
 * went: the File transport's file, the stdout pipe (a Console transport), the in-memory
 * transports, and the real stderr pipe, read by a reader that is fast, slow or stopped.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Case, Result } from './log-delivery-child';

export type { Case, Result };

/**
 * How the parent reads a pipe: as fast as it can, a few KB at a time, not until the child has
 * exited, or (`resumed`) not until the child says `{"burst":"done"}` on stdout.
 */
export type Reader = 'fast' | 'slow' | 'stopped' | 'resumed';

export interface Run {
  result: Result;
  /** Records, by the file, the stdout pipe and the stderr pipe. */
  file: Array<Record<string, unknown>>;
  stdout: Array<Record<string, unknown>>;
  stderr: Array<Record<string, unknown>>;
  /** stderr lines that are not JSON (there should be none). */
  stderrText: string[];
  exitCode: number | null;
}

export interface Readers {
  stderr?: Reader;
  stdout?: Reader;
  /** Bytes a slow reader takes per tick (default 4096), and its tick in ms (default 20). */
  slowBytes?: number;
  slowEveryMs?: number;
}

export async function runCase(spec: Case, readers: Readers = {}): Promise<Run> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ebt-delivery-'));
  const file = path.join(dir, 'app.log');
  const resultFile = path.join(dir, 'result.json');
  try {
    const child = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'log-delivery-child.ts')],
      {
        cwd: path.join(__dirname, '..', '..'),
        env: { ...process.env, CASE: JSON.stringify(spec), FILE: file, RESULT_FILE: resultFile },
      },
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const burstDone = new Promise<void>((resolve) => {
      let seen = '';
      const look = (chunk: Buffer) => {
        seen += chunk.toString();
        if (!seen.includes('{"burst":"done"}')) return;
        child.stdout.off('data', look);
        resolve();
      };
      child.stdout.on('data', look);
    });
    const when = { exited, burstDone };
    const [stdout, stderr] = await Promise.all([
      read(child.stdout, readers.stdout ?? 'fast', readers, when),
      read(child.stderr, readers.stderr ?? 'fast', readers, when),
    ]);
    const exitCode = await exited;
    const stderrLines = lines(stderr);
    const result = JSON.parse(readFileSync(resultFile, 'utf8')) as Result;
    return {
      result,
      file: parse(lines(readFileIfAny(file))),
      stdout: parse(lines(stdout)),
      stderr: parse(stderrLines.filter((line) => line.startsWith('{'))),
      stderrText: stderrLines.filter((line) => !line.startsWith('{')),
      exitCode,
    };
  } catch (error) {
    throw new Error(`case ${JSON.stringify(spec)} failed: ${String(error)}`, { cause: error });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The record ids in `records` (a record's `id`, or the task it is about), with how often each appears. */
export function idCounts(records: Array<Record<string, unknown>>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const record of records) {
    const id = typeof record.id === 'string' ? record.id : record.task;
    if (typeof id === 'string' && /^r\d+$/.test(id)) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/**
 * Reads a pipe to its end, at the reader's pace. A reader that is not fast listens for
 * 'readable' and takes what it wants with read(): Node resumes, at the child's exit, any stdio
 * stream of the parent that nobody listens to that way, and what it then reads is thrown away.
 */
function read(
  stream: Readable,
  reader: Reader,
  readers: Readers,
  when: { exited: Promise<unknown>; burstDone: Promise<unknown> },
): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    if (reader === 'fast') {
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      return;
    }
    let takingAll = false;
    const takeAll = () => {
      takingAll = true;
      for (
        let chunk = stream.read() as Buffer | null;
        chunk !== null;
        chunk = stream.read() as Buffer | null
      )
        chunks.push(chunk);
    };
    stream.on('readable', () => {
      if (takingAll) takeAll();
    });
    const timer =
      reader === 'slow'
        ? setInterval(() => {
            const chunk = stream.read(readers.slowBytes ?? 4096) as Buffer | null;
            if (chunk !== null) chunks.push(chunk);
          }, readers.slowEveryMs ?? 20)
        : undefined;
    void (reader === 'resumed' ? Promise.race([when.burstDone, when.exited]) : when.exited).then(
      () => {
        clearInterval(timer);
        takeAll();
      },
    );
  });
}

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '');
}

function parse(lines: string[]): Array<Record<string, unknown>> {
  return lines.map((line) => {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      return { unparsed: line };
    }
  });
}

function readFileIfAny(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
