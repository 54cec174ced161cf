/**
 * A real PostgreSQL server for the pg-boss tests: each test file starts its own on a free
 * loopback port, in a fresh data directory (no fsync: nothing here must survive a power cut), and
 * stops it at the end. Debian's `postgresql` package provides the binaries (.ci/run installs it);
 * they refuse to run as root, so as root the server runs as the `postgres` user that package makes.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './ports';

const DEBIAN_BINARIES = '/usr/lib/postgresql';
const MISSING =
  'PostgreSQL server binaries were not found. The pg-boss tests need a real PostgreSQL: install ' +
  'it with `apt-get install postgresql` (Debian/Ubuntu), or set POSTGRES_BIN to the folder of ' +
  'initdb and postgres.';

export interface PostgresServer {
  readonly port: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  readonly url: string;
  /** Stops the server at once and removes its data. */
  stop(): Promise<void>;
}

/** Starts PostgreSQL on a free port and resolves once it accepts connections. */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = binaries();
  const dir = mkdtempSync(path.join(tmpdir(), 'ebt-postgres-'));
  const data = path.join(dir, 'data');
  const user: { uid?: number; gid?: number } = process.getuid?.() === 0 ? postgresUser() : {};
  if (user.uid !== undefined) chownSync(dir, user.uid, user.gid!);
  execFileSync(
    path.join(bin, 'initdb'),
    ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8'],
    { stdio: 'pipe', ...user },
  );
  const port = await freePort();
  const child = await launch(path.join(bin, 'postgres'), user, [
    '-D',
    data,
    '-p',
    String(port),
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'fsync=off',
    '-c',
    'synchronous_commit=off',
    '-c',
    'full_page_writes=off',
    '-c',
    'max_connections=200',
  ]);
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The folder of initdb and postgres: POSTGRES_BIN, else the newest Debian major version. */
function binaries(): string {
  const given = process.env.POSTGRES_BIN;
  if (given !== undefined && given !== '') return given;
  const majors = existsSync(DEBIAN_BINARIES)
    ? readdirSync(DEBIAN_BINARIES)
        .filter((name) => existsSync(path.join(DEBIAN_BINARIES, name, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (majors.length === 0) throw new Error(MISSING);
  return path.join(DEBIAN_BINARIES, majors[0], 'bin');
}

function launch(
  command: string,
  user: { uid?: number; gid?: number },
  args: string[],
): Promise<ChildProcess> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...user });
  return new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('database system is ready to accept connections')) {
        child.stderr!.off('data', onData);
        child.stderr!.resume();
        resolve(child);
      }
    };
    child.stdout!.resume();
    child.stderr!.on('data', onData);
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'ENOENT' ? new Error(MISSING) : error),
    );
    child.once('exit', (code, signal) =>
      reject(new Error(`postgres exited (${code ?? signal}) before it was ready:\n${output}`)),
    );
  });
}

/** SIGQUIT: PostgreSQL's immediate shutdown (its data is thrown away). */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGQUIT');
  });
}

/** The `postgres` user's ids, for running the server as root. */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) =>
    Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}
