#!/usr/bin/env node
// The import graph of lib/ has no cycle: every relative import (static, `export … from`, dynamic
// `import()`, type-only ones included: a type import is an arrow between layers too) of every lib/**/*.ts
// is an edge, and each strongly connected component of more than one file (or a file importing itself)
// is printed as a cycle. Exit status 1 when there is one. Run by test/package/imports.test.ts.
//
//   node scripts/check-imports.mjs [folder]      (default: lib)
//   node scripts/check-imports.mjs --json [folder]
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const json = args.includes('--json');
const root = path.resolve(args.find((a) => !a.startsWith('--')) ?? path.join(import.meta.dirname, '..', 'lib'));

function tsFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

// `from '…'` ends every import/export-from statement (multi-line ones too); `import('…')` is dynamic.
const SPECIFIER = /\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

/** The lib/ file a relative specifier names ('./x.js' -> x.ts, './x' -> x.ts or x/index.ts), or null. */
function resolve(from, spec) {
  if (!spec.startsWith('.')) return null;
  const base = path.resolve(path.dirname(from), spec);
  for (const c of [base.replace(/\.js$/, '.ts'), `${base}.ts`, path.join(base, 'index.ts')]) {
    try {
      if (statSync(c).isFile()) return c;
    } catch {
      // not this one
    }
  }
  return null;
}

export function importGraph(dir) {
  const graph = new Map();
  for (const file of tsFiles(dir)) {
    // Comments may quote import lines; strip them first (block, then line comments not inside strings).
    const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    const edges = new Set();
    for (const m of text.matchAll(SPECIFIER)) {
      const target = resolve(file, m[1] ?? m[2] ?? m[3]);
      if (target) edges.add(target);
    }
    graph.set(file, edges);
  }
  return graph;
}

/** Tarjan's strongly connected components; the ones that are cycles. */
export function cycles(graph) {
  let index = 0;
  const stack = [];
  const on = new Set();
  const idx = new Map();
  const low = new Map();
  const found = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) {
        low.set(v, Math.min(low.get(v), idx.get(w)));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || graph.get(v)?.has(v)) found.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

const graph = importGraph(root);
const found = cycles(graph);
const rel = (f) => path.relative(path.dirname(root), f);
if (json) {
  process.stdout.write(`${JSON.stringify({ files: graph.size, edges: [...graph.values()].reduce((n, e) => n + e.size, 0), cycles: found.map((c) => c.map(rel)) })}\n`);
} else if (found.length === 0) {
  process.stdout.write(`check-imports: ${graph.size} files, no import cycle\n`);
} else {
  process.stdout.write(`check-imports: ${found.length} import cycle(s) among ${graph.size} files:\n`);
  for (const c of found) process.stdout.write(`  ${c.map(rel).join(' <-> ')}\n`);
}
process.exitCode = found.length === 0 ? 0 : 1;
