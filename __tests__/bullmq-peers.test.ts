/**
 * bullmq and ioredis are optional peer dependencies: the package is laid out in a scratch
 * node_modules without them, and real child `node` processes require and import it there. The
 * main entry point works; `/bullmq` throws one helpful Error, the same for `require` and for an
 * ESM `import` of the CommonJS build, naming what is missing and the command that installs it.
 *
 * The build is made here with TypeScript's `transpileModule` and tsconfig.build.json's options:
 * the same JavaScript that `npm run build` writes (byte for byte, less the source-map comment),
 * without its type check, which takes ten times longer. `.ci/run` checks the packed tarball too.
 */
import { execFile } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ts from 'typescript';

const REPO = path.join(__dirname, '..');
const PACKAGE = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
  name: string;
  dependencies: Record<string, string>;
};

let scratch: string;
let installed: string;

/** `dist/` as `npm run build` writes it (JavaScript only: no declarations, no source maps). */
function build(outDir: string): void {
  const config = ts.getParsedCommandLineOfConfigFile(
    path.join(REPO, 'tsconfig.build.json'),
    { sourceMap: false, declaration: false },
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
      },
    },
  );
  if (config === undefined || config.fileNames.length === 0) throw new Error('no files to build');
  for (const file of config.fileNames) {
    const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      compilerOptions: config.options,
      fileName: file,
    });
    const target = path
      .join(outDir, path.relative(config.options.rootDir!, file))
      .replace(/\.ts$/, '.js');
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, outputText);
  }
}

/** Makes `name` from this repository's node_modules visible in the scratch node_modules. */
function link(name: string): void {
  const target = path.join(scratch, 'node_modules', name);
  mkdirSync(path.dirname(target), { recursive: true });
  symlinkSync(path.join(REPO, 'node_modules', name), target, 'dir');
}

/** Runs `node` in the scratch folder (the Node running the tests) and returns what it printed. */
function node(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: scratch, timeout: 15_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`node ${args.join(' ')} failed: ${error.message}\n${stderr}`));
      else resolve(stdout.trim());
    });
  });
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
  scratch = mkdtempSync(path.join(tmpdir(), 'ebt-peers-'));
  installed = path.join(scratch, 'node_modules', PACKAGE.name);
  build(path.join(installed, 'dist'));
  cpSync(path.join(REPO, 'package.json'), path.join(installed, 'package.json'));
  writeFileSync(path.join(scratch, 'package.json'), '{ "private": true }\n');
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
