/**
 * Runs a TypeScript script of the test support to its end, in a child process on the Node running
 * the tests, and gives what it wrote: for tests of what only a real process shows (its stderr, its
 * exit code, its heap).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

export interface ChildOutput {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** Runs `__tests__/support/<script>` with `env` added, and Node's `flags` (`--expose-gc`, say). */
export function runChild(
  script: string,
  env: Record<string, string>,
  flags: string[] = [],
): Promise<ChildOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...flags, '-r', 'ts-node/register/transpile-only', path.join(__dirname, script)],
      { cwd: path.join(__dirname, '..', '..'), env: { ...process.env, ...env } },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ stdout, stderr, code }));
  });
}

/** The JSON lines of a child's output (other lines are skipped). */
export function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
