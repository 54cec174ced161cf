/**
 * The check an engine's entry point runs first: its optional peer dependencies can be found, and
 * the Node it runs on can load them. Otherwise it throws an Error that says what is wrong and how
 * to fix it (the command that installs the missing peers, or the Node version needed), instead of
 * Node's "Cannot find module" or a syntax error from deep inside the engine. And the one test of
 * whether an optional peer is installed, which otel-api.ts uses too.
 */

/** What an entry point needs beyond the package itself. */
export interface EntryNeeds {
  /** The entry point, as users import it: `express-background-tasks/bullmq`. */
  readonly entry: string;
  /** The npm packages it loads, each an optional peer dependency. */
  readonly peers: readonly string[];
  /** The oldest Node that can load them, as `[major, minor]`, when they need a newer one than the package. */
  readonly node?: readonly [number, number];
  /** Why that Node is needed, said after the version. */
  readonly nodeReason?: string;
}

/** Throws when a peer is missing or the Node is too old; returns nothing otherwise. */
export function checkEntryNeeds(needs: EntryNeeds, nodeVersion = process.versions.node): void {
  const { entry, peers, node } = needs;
  const missing = peers.filter((name) => !installed(name));
  if (missing.length > 0) {
    const one = missing.length === 1;
    throw new Error(
      `${entry} needs ${missing.join(' and ')}, which ${one ? 'is' : 'are'} not ` +
        'installed (optional peer dependencies of express-background-tasks, needed by this entry point ' +
        `only). Install ${one ? 'it' : 'them'} with: npm install ${missing.join(' ')}`,
    );
  }
  if (node !== undefined && olderThan(nodeVersion, node)) {
    throw new Error(
      `${entry} needs Node ${node[0]}.${node[1]} or later, and this is Node ${nodeVersion}` +
        `${needs.nodeReason === undefined ? '' : `: ${needs.nodeReason}`}. The rest of ` +
        'express-background-tasks works on this Node.',
    );
  }
}

/**
 * Whether `name` resolves from the library's folder, as the library's own imports of it will: for
 * an entry point's peers, and for `@opentelemetry/api` (otel-api.ts).
 */
export function installed(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === 'MODULE_NOT_FOUND') return false;
    throw error;
  }
}

function olderThan(version: string, [major, minor]: readonly [number, number]): boolean {
  const [givenMajor, givenMinor] = version.split('.').map(Number);
  return givenMajor < major || (givenMajor === major && givenMinor < minor);
}
