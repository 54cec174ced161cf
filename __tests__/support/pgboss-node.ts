/**
 * pg-boss 12 loads only on Node 22.12 or later. A pg-boss test file registers its tests through
 * `describePgBoss()`: on such a Node they run; on an older one (CI's Node 20 run) a single test takes
 * their place, whose name and output say why they cannot run, and which asserts the Error the entry
 * point throws there instead.
 */
import path from 'node:path';

const [major, minor] = process.versions.node.split('.').map(Number);
export const PG_BOSS_NODE = major > 22 || (major === 22 && minor >= 12);

export function describePgBoss(name: string, define: () => void): void {
  if (PG_BOSS_NODE) {
    describe(name, define);
    return;
  }
  test(`pg-boss needs Node ≥ 22.12: on Node ${process.versions.node} the entry throws that Error (${name} runs on Node 22 and 24)`, () => {
    const entry = path.join(__dirname, '..', '..', 'lib', 'pg-boss');
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- not imported: on Node 20 it throws
    expect(() => require(entry)).toThrow(
      new Error(
        `express-background-tasks/pg-boss needs Node 22.12 or later, and this is Node ${process.versions.node}: ` +
          'pg-boss 12 is an ES module, loaded here with require(esm). The rest of express-background-tasks works on this Node.',
      ),
    );
    process.stdout.write(
      `${name}: not run on Node ${process.versions.node}; pg-boss needs Node ≥ 22.12 (CI runs it on 22 and 24)\n`,
    );
  });
}
