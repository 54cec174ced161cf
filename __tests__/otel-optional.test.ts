/**
 * `@opentelemetry/api` is an optional peer dependency: without it the library runs as usual and
 * records no telemetry, with no error and no warning. The library runs in a scratch project
 * (support/scratch.ts) where the package is really missing, in a real child process serving real
 * requests. That it is traced and measured when the package is installed is telemetry.test.ts's.
 */
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import {
  buildLibrary,
  linkPackage,
  makeScratch,
  REPO,
  runNode,
  transpile,
} from './support/scratch';

const PACKAGE = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};

let scratch: string;

beforeAll(() => {
  scratch = makeScratch('ebt-no-otel-');
  // The repository's layout, so that the child's `../../lib` is the library built here.
  buildLibrary(path.join(scratch, 'lib'));
  for (const file of ['no-otel-child.ts', 'capture.ts']) {
    transpile(
      path.join(REPO, '__tests__', 'support', file),
      path.join(scratch, '__tests__', 'support', file),
    );
  }
  // What an application has: the runtime dependencies, Express, and winston's transport base.
  for (const name of [...Object.keys(PACKAGE.dependencies), 'express', 'winston-transport']) {
    linkPackage(scratch, name);
  }
  // Nothing above the scratch folder (a node_modules in the temporary folder…) may provide it.
  expect(() =>
    require.resolve('@opentelemetry/api', { paths: [path.join(scratch, 'lib')] }),
  ).toThrow(expect.objectContaining({ code: 'MODULE_NOT_FOUND' }));
}, 60_000);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test('@opentelemetry/api is an optional peer dependency, not a dependency', () => {
  expect(Object.keys(PACKAGE.dependencies)).not.toContain('@opentelemetry/api');
  expect(PACKAGE.peerDependencies['@opentelemetry/api']).toBe('^1.9.0');
  expect(PACKAGE.peerDependenciesMeta['@opentelemetry/api']).toEqual({ optional: true });
});

test('without @opentelemetry/api, tasks succeed, fail and time out as usual, with nothing said of it', async () => {
  const { stdout, stderr } = await runNode(scratch, ['__tests__/support/no-otel-child.js']);
  const seen = JSON.parse(stdout);
  expect(seen.apiResolves).toBe(false);
  expect(seen.loadedOtel).toEqual([]);
  expect(seen.responses).toEqual([
    { status: 200, body: 'queued' },
    { status: 503, body: 'Service Unavailable' }, // a 5xx's message stays in the log,
  ]);
  expect(seen.stats).toMatchObject({
    pending: 0,
    running: 0,
    succeeded: 2, // `fine` and the notifier
    failed: 1,
    timedOut: 1,
    rejected: 0,
    abandoned: 0,
  });
  expect(seen.drained).toEqual({ completed: true, abandoned: 0 });
  expect(seen.notified).toEqual([503]);
  const failures = seen.records.filter(
    (record: { message: string }) => record.message === 'background task failed',
  );
  expect(failures).toEqual([
    expect.objectContaining({ task: 'broken', timedOut: false, error: 'broken' }),
    expect.objectContaining({ task: 'slow', timedOut: true }),
  ]);
  // The two failures and the 503's line, whichever came first: nothing else, and nothing about
  // OpenTelemetry.
  expect(seen.records.map((record: { message: string }) => record.message).sort()).toEqual([
    'background task failed',
    'background task failed',
    'request failed',
  ]);
  expect(stdout + stderr).not.toMatch(/opentelemetry/i);
  expect(stderr).toBe('');
});
