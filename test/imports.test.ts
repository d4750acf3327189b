// DESIGN.md section 9's import rules, read from the sources: no import loops (type imports included: a loop of
// types still ties two modules together), no lower floor importing a higher one, and the API kept off the serving
// side and the build internals.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');

/** Every source file (relative to the root, `src/...`) with the source files it imports, statically or not. */
function importGraph(): Map<string, string[]> {
  const files = (readdirSync(SRC, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => join('src', f));
  const graph = new Map<string, string[]>();
  const spec = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)'(\.{1,2}\/[^']+)'/gm;
  for (const f of files) {
    const text = readFileSync(join(ROOT, f), 'utf8');
    const deps = new Set<string>();
    for (const m of text.matchAll(spec)) deps.add(relative(ROOT, resolve(ROOT, dirname(f), m[1])).replace(/\.js$/, '.ts'));
    graph.set(f, [...deps].filter((d) => graph.has(d) || files.includes(d)));
  }
  return graph;
}

/** The import loops: strongly connected components of more than one file, or a file importing itself. */
function loops(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.get(v)!.includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

/** The imports of files under `from` that reach a file under one of `to`, as `importer -> imported`. */
function crossings(graph: Map<string, string[]>, from: string, to: string[]): string[] {
  const out: string[] = [];
  for (const [f, deps] of graph) {
    if (!f.startsWith(from)) continue;
    for (const d of deps) if (to.some((t) => d.startsWith(t))) out.push(`${f} -> ${d}`);
  }
  return out;
}

describe('import rules (DESIGN.md section 9)', () => {
  const graph = importGraph();

  it('reads the sources it checks', () => {
    expect(graph.get('src/pyramid/build.ts')).toContain('src/pyramid/plan.ts');
    expect(graph.get('src/raster/render.ts')).toContain('src/raster/tile.ts');
    // a loop made on purpose is found
    expect(loops(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]))).toEqual([['a', 'b', 'c']]);
  });

  it('has no import loops', () => {
    expect(loops(graph)).toEqual([]);
  });

  it('imports from lower floors only: geo, then raster, then tiles, then pyramid', () => {
    expect(crossings(graph, 'src/geo/', ['src/raster/', 'src/tiles/', 'src/pyramid/'])).toEqual([]);
    expect(crossings(graph, 'src/raster/', ['src/tiles/', 'src/pyramid/'])).toEqual([]);
    expect(crossings(graph, 'src/tiles/', ['src/pyramid/'])).toEqual([]);
    const above = ['src/api/', 'src/protocols/', 'src/state/', 'src/jobs.ts', 'src/registry.ts', 'src/cache.ts', 'src/app.ts', 'src/main.ts'];
    for (const floor of ['src/geo/', 'src/raster/', 'src/tiles/', 'src/pyramid/']) expect(crossings(graph, floor, above)).toEqual([]);
  });

  it('keeps the protocols off the API and the state, and the API off serving and the build internals', () => {
    expect(crossings(graph, 'src/protocols/', ['src/api/', 'src/state/'])).toEqual([]);
    const buildInternals = ['build', 'plan', 'quadtree', 'publish', 'worker', 'workers', 'fuse'].map((m) => `src/pyramid/${m}.ts`);
    expect(crossings(graph, 'src/api/', ['src/protocols/', 'src/registry.ts', 'src/cache.ts', 'src/jobs.ts', 'src/raster/', 'src/tiles/', ...buildInternals])).toEqual([]);
  });

  it('has no sideways imports between the resources of the API or between protocols', () => {
    // what resources share lives in api/http.ts (and the fusion parameters in api/fusion.ts); protocols share tile.ts
    const shared = ['src/api/http.ts', 'src/api/fusion.ts', 'src/api/index.ts'];
    const resources = [...graph.keys()].filter((f) => f.startsWith('src/api/') && !shared.includes(f));
    const sideways = resources.flatMap((f) => graph.get(f)!.filter((d) => resources.includes(d)).map((d) => `${f} -> ${d}`));
    expect(sideways).toEqual([]);
    const viewers = ['src/protocols/viewer.ts'];
    expect(crossings(graph, 'src/protocols/', viewers).filter((c) => !c.startsWith('src/protocols/viewer.ts'))).toEqual([]);
  });
});
