/**
 * bullmq and ioredis are optional peer dependencies: the package is laid out in a scratch
 * node_modules without them, and real child `node` processes require and import it there. The
 * main entry point works; `/bullmq` throws one helpful Error, the same for `require` and for an
 * ESM `import` of the CommonJS build, naming what is missing and the command that installs it.
 * The scratch project is support/scratch.ts's.
 */
import { cpSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { buildLibrary, linkPackage, makeScratch, REPO, runNode } from './support/scratch';

const PACKAGE = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
  name: string;
  dependencies: Record<string, string>;
};

let scratch: string;
let installed: string;

/** Makes `name` from this repository's node_modules visible in the scratch node_modules. */
const link = (name: string) => linkPackage(scratch, name);

/** Runs `node` in the scratch folder and returns what it printed. */
async function node(args: string[]): Promise<string> {
  return (await runNode(scratch, args)).stdout.trim();
}

/** What `require('express-background-tasks/bullmq')` gives in a child process. */
async function requireBullmqEntry(): Promise<{
  loaded?: string[];
  isError?: boolean;
  message?: string;
}> {
  const script = `
    let result;
    try {
      const entry = require('express-background-tasks/bullmq');
      result = { loaded: [typeof entry.bullmqDurable, typeof entry.startWorker] };
    } catch (error) {
      result = { isError: error instanceof Error, message: error.message };
    }
    console.log(JSON.stringify(result));`;
  return JSON.parse(await node(['-e', script]));
}

/** What `import('express-background-tasks/bullmq')` gives in an ES module of a child process. */
async function importBullmqEntry(): Promise<{
  loaded?: string[];
  isError?: boolean;
  message?: string;
}> {
  const script = `
    let result;
    try {
      const entry = await import('express-background-tasks/bullmq');
      result = { loaded: [typeof entry.bullmqDurable, typeof entry.startWorker] };
    } catch (error) {
      result = { isError: error instanceof Error, message: error.message };
    }
    console.log(JSON.stringify(result));`;
  return JSON.parse(await node(['--input-type=module', '-e', script]));
}

beforeAll(() => {
  scratch = makeScratch('ebt-peers-');
  installed = path.join(scratch, 'node_modules', PACKAGE.name);
  buildLibrary(path.join(installed, 'dist'));
  cpSync(path.join(REPO, 'package.json'), path.join(installed, 'package.json'));
  // The runtime dependencies only: their own dependencies resolve from their real place here.
  for (const name of Object.keys(PACKAGE.dependencies)) link(name);
  // Nothing above the scratch folder (a node_modules in the temporary folder…) may provide them.
  for (const peer of ['bullmq', 'ioredis']) {
    expect(() =>
      require.resolve(peer, { paths: [path.join(installed, 'dist', 'bullmq')] }),
    ).toThrow(expect.objectContaining({ code: 'MODULE_NOT_FOUND' }));
  }
}, 60_000);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test('the runtime dependencies do not include bullmq or ioredis', () => {
  expect(Object.keys(PACKAGE.dependencies)).not.toContain('bullmq');
  expect(Object.keys(PACKAGE.dependencies)).not.toContain('ioredis');
});

test('without bullmq and ioredis the main entry point works, by require and by import', async () => {
  const required = await node([
    '-e',
    `const lib = require('express-background-tasks');
     console.log([typeof lib.backgroundTasks, typeof lib.httpErrorHandler, typeof lib.defineTask].join());`,
  ]);
  expect(required).toBe('function,function,function');
  const imported = await node([
    '--input-type=module',
    '-e',
    `import { backgroundTasks, httpErrorHandler, defineTask } from 'express-background-tasks';
     console.log([typeof backgroundTasks, typeof httpErrorHandler, typeof defineTask].join());`,
  ]);
  expect(imported).toBe('function,function,function');
});

test('without bullmq and ioredis, /bullmq throws an Error naming both and the install command', async () => {
  const required = await requireBullmqEntry();
  expect(required).toEqual({
    isError: true,
    message:
      'express-background-tasks/bullmq needs bullmq and ioredis, which are not installed (optional ' +
      'peer dependencies of express-background-tasks, needed by this entry point only). Install ' +
      'them with: npm install bullmq ioredis',
  });
  // An ES module importing the CommonJS build gets the same Error.
  expect(await importBullmqEntry()).toEqual(required);
});

test('with bullmq but without ioredis, /bullmq names ioredis alone', async () => {
  link('bullmq');
  const required = await requireBullmqEntry();
  expect(required).toEqual({
    isError: true,
    message:
      'express-background-tasks/bullmq needs ioredis, which is not installed (optional peer ' +
      'dependencies of express-background-tasks, needed by this entry point only). Install it ' +
      'with: npm install ioredis',
  });
  expect(await importBullmqEntry()).toEqual(required);
});

test('with both installed, /bullmq loads, by require and by import', async () => {
  link('ioredis');
  const expected = { loaded: ['function', 'function'] };
  expect(await requireBullmqEntry()).toEqual(expected);
  expect(await importBullmqEntry()).toEqual(expected);
});
