/**
 * The library's imports run one way: data at the bottom, the parts that act on it above. Every
 * import of lib/ (type-only ones included, and `export … from`) is read, and the graph must have
 * no cycle; the entry points import only downwards too, and the main one never reaches an engine.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const LIB = path.join(__dirname, '..', 'lib');

/** Every .ts file under lib/, relative to it, without the extension. */
function modules(dir = LIB): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return modules(full);
    return entry.name.endsWith('.ts') ? [path.relative(LIB, full).replace(/\.ts$/, '')] : [];
  });
}

/** The lib/ modules that `module` imports, type-only imports included. */
function importsOf(module: string): string[] {
  const source = readFileSync(path.join(LIB, `${module}.ts`), 'utf8');
  const found = new Set<string>();
  for (const match of source.matchAll(/(?:^|\n)\s*(?:import|export)[^'";]*?from\s+'(\.[^']+)'/g)) {
    found.add(resolve(module, match[1]));
  }
  for (const match of source.matchAll(/(?:^|\n)\s*import\s+'(\.[^']+)'/g)) {
    found.add(resolve(module, match[1]));
  }
  return [...found];
}

function resolve(from: string, specifier: string): string {
  const target = path.posix.join(path.posix.dirname(from), specifier);
  return modules().includes(target) ? target : `${target}/index`;
}

const graph = new Map(modules().map((module) => [module, importsOf(module)]));

/** A cycle through the graph as a list of modules, or undefined. */
function findCycle(): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (module: string): string[] | undefined => {
    if (state.get(module) === 'done') return undefined;
    if (state.get(module) === 'visiting') return [...stack.slice(stack.indexOf(module)), module];
    state.set(module, 'visiting');
    stack.push(module);
    for (const next of graph.get(module) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(module, 'done');
    return undefined;
  };
  for (const module of graph.keys()) {
    const cycle = visit(module);
    if (cycle) return cycle;
  }
  return undefined;
}

/** Every module `module` reaches through its imports. */
function reachable(module: string, seen = new Set<string>()): Set<string> {
  for (const next of graph.get(module) ?? []) {
    if (seen.has(next)) continue;
    seen.add(next);
    reachable(next, seen);
  }
  return seen;
}

test('every import of lib/ resolves to a file there', () => {
  for (const [module, imports] of graph) {
    for (const target of imports)
      expect({ module, target, found: graph.has(target) }).toEqual({ module, target, found: true });
  }
});

test('no module of lib/ imports itself through others, type-only imports included', () => {
  expect(findCycle()).toBeUndefined();
});

test('the main entry point reaches no engine folder', () => {
  const engines = [...reachable('index')].filter((module) => module.includes('/'));
  expect(engines).toEqual([]);
});

test('lib/index.ts only re-exports', () => {
  const source = readFileSync(path.join(LIB, 'index.ts'), 'utf8');
  const statements = source
    .replace(/\/\*\*[\s\S]*?\*\//g, '')
    .split(';')
    .map((statement) => statement.trim())
    .filter(Boolean);
  for (const statement of statements)
    expect(statement).toMatch(/^export (type )?\{[\s\S]*\} from '\.\/[\w-]+'$/);
});
