/**
 * A scratch project in a temporary folder, for tests of the library with an optional peer really
 * missing: its node_modules holds links to the packages of this repository's that a test chooses,
 * and nothing else, and the library (and any support script) is written there as JavaScript.
 * Real child `node` processes run in it.
 *
 * The JavaScript is made with TypeScript's `transpileModule` and tsconfig.build.json's options:
 * the same that `npm run build` writes (byte for byte, less the source-map comment), without its
 * type check, which takes ten times longer. `.ci/run` checks the packed tarball too.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ts from 'typescript';

export const REPO = path.join(__dirname, '..', '..');

/** What a child `node` wrote. */
export interface NodeOutput {
  stdout: string;
  stderr: string;
}

/** A new scratch project folder: a private package.json and nothing installed. */
export function makeScratch(prefix: string): string {
  const scratch = mkdtempSync(path.join(tmpdir(), prefix));
  writeFileSync(path.join(scratch, 'package.json'), '{ "private": true }\n');
  return scratch;
}

/** lib/ as `npm run build` writes it to dist/ (JavaScript only: no declarations, no source maps). */
export function buildLibrary(outDir: string): void {
  const config = buildConfig();
  if (config.fileNames.length === 0) throw new Error('no files to build');
  for (const file of config.fileNames) {
    transpile(file, path.join(outDir, path.relative(config.options.rootDir!, file)));
  }
}

/** Writes the JavaScript of `file` (a .ts file) at `target` (its .ts name is made .js). */
export function transpile(file: string, target: string): void {
  const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
    compilerOptions: buildConfig().options,
    fileName: file,
  });
  const output = target.replace(/\.ts$/, '.js');
  mkdirSync(path.dirname(output), { recursive: true });
  writeFileSync(output, outputText);
}

/** Makes `name` from this repository's node_modules visible in the scratch node_modules. */
export function linkPackage(scratch: string, name: string): void {
  const target = path.join(scratch, 'node_modules', name);
  mkdirSync(path.dirname(target), { recursive: true });
  symlinkSync(path.join(REPO, 'node_modules', name), target, 'dir');
}

/** Runs `node` in the scratch folder (the Node running the tests); rejects when it fails. */
export function runNode(scratch: string, args: string[]): Promise<NodeOutput> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: scratch, timeout: 15_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`node ${args.join(' ')} failed: ${error.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

let parsedConfig: ts.ParsedCommandLine | undefined;

/** tsconfig.build.json, read once, with declarations and source maps off. */
function buildConfig(): ts.ParsedCommandLine {
  parsedConfig ??= ts.getParsedCommandLineOfConfigFile(
    path.join(REPO, 'tsconfig.build.json'),
    { sourceMap: false, declaration: false },
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
      },
    },
  );
  if (parsedConfig === undefined) throw new Error('tsconfig.build.json could not be read');
  return parsedConfig;
}
