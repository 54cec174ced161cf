/**
 * Runs a bench script in a child process (`node -r ts-node/register/transpile-only`,
 * NODE_ENV=production) and returns the one message it sends back. Every part that measures
 * CPU or heap runs in a fresh process, so that no part inherits another's JIT or heap state.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface ChildOptions {
  /** Extra node flags, e.g. --expose-gc. */
  nodeFlags?: string[];
}

export function childEnv(): NodeJS.ProcessEnv {
  return { ...process.env, NODE_ENV: 'production' };
}

export function forkScript(
  script: string,
  args: string[],
  options: ChildOptions = {},
): ChildProcess {
  return fork(path.join(__dirname, script), args, {
    // Never process.execArgv: under `node -e` it holds the script, and the child would run it again.
    execArgv: ['-r', 'ts-node/register/transpile-only', ...(options.nodeFlags ?? [])],
    env: childEnv(),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** Forks `script`, waits for its single result message, and for it to exit. */
export function runChild<T>(
  script: string,
  args: string[],
  options: ChildOptions = {},
): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = forkScript(script, args, options);
    let result: { ok: true; value: T } | { ok: false; error: string } | undefined;
    child.on('message', (message) => (result = message as typeof result));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (result?.ok) resolve(result.value);
      else
        reject(
          new Error(
            `${script} ${args.join(' ')} failed (exit ${code}): ${result?.error ?? 'no result'}`,
          ),
        );
    });
  });
}

/** The child side: runs `main` and sends its value (or its error) to the parent, then exits. */
export function childMain<T>(main: () => Promise<T>): void {
  main().then(
    (value) => process.send!({ ok: true, value }, () => process.exit(0)),
    (error: unknown) => {
      const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
      process.send!({ ok: false, error: text }, () => process.exit(1));
    },
  );
}
