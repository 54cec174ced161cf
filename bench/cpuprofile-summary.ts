/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function, total time
 * (self and callees) by function, and self time by file, as shares of all samples.
 * Usage: cpuprofile-summary.ts <file.cpuprofile> [top=30] [filter]
 * where `filter` keeps only rows that contain it (e.g. `lib/`).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function main(): void {
  const [file, topArg = '30', filter = ''] = process.argv.slice(2);
  if (file === undefined)
    throw new Error('usage: cpuprofile-summary.ts <file.cpuprofile> [top] [filter]');
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  // Self time per node: each sample's delta is charged to the node it landed in.
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) =>
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)),
  );
  const total = profile.endTime - profile.startTime;
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  const keyOf = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const shortUrl = url.replace(/^file:\/\//, '').replace(process.cwd() + '/', '');
    return {
      key: `${functionName || '(anonymous)'}  ${shortUrl || '(native)'}:${lineNumber + 1}`,
      shortUrl,
    };
  };
  // Total time per function: each node's subtree, counted once per function on a path (recursion).
  const totalByFunction = new Map<string, number>();
  const subtree = (id: number, onPath: Set<string>): number => {
    const node = byId.get(id)!;
    const { key } = keyOf(node);
    const fresh = !onPath.has(key);
    if (fresh) onPath.add(key);
    let us = selfUs.get(id) ?? 0;
    for (const child of node.children ?? []) us += subtree(child, onPath);
    if (fresh) {
      onPath.delete(key);
      totalByFunction.set(key, (totalByFunction.get(key) ?? 0) + us);
    }
    return us;
  };
  subtree(profile.nodes[0].id, new Set());
  for (const [id, us] of selfUs) {
    const { key, shortUrl } = keyOf(byId.get(id)!);
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
    const fileKey =
      shortUrl.replace(/^node_modules\/((@[^/]+\/)?[^/]+).*/, 'node_modules/$1') ||
      byId.get(id)!.callFrame.functionName;
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + us);
  }
  const show = (title: string, map: Map<string, number>) => {
    console.log(`\n${title}`);
    [...map]
      .filter(([key]) => key.includes(filter))
      .sort((a, b) => b[1] - a[1])
      .slice(0, Number(topArg))
      .forEach(([key, us]) =>
        console.log(
          `${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${key}`,
        ),
      );
  };
  console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
  show('self time by function', byFunction);
  show('total time (self + callees) by function', totalByFunction);
  show('self time by file / package', byFile);
}

main();
