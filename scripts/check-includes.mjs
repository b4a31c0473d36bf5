#!/usr/bin/env node
// The include graph of the native code points one way (issue #17). Each file's layer is its folder:
//
//   core < model < kernels < cache < engine < cuda < addon < native-tests
//
//   csrc/core     status, dtype, json, threads, and the shared views (core/views.h) and the memory half
//                 of the backend seam (core/device_memory.h)
//   csrc/model    config, checkpoint formats, weight binding
//   csrc/kernels  the CPU kernels (namespace cpu)
//   csrc/cache    KV pool, sequence state, snapshots, prefix cache (memory through core/device_memory.h)
//   csrc/engine   the backend seam, the forward pass, sampler, scheduler, Engine
//   cuda/         the CUDA kernels and the CUDA backend: an implementation of engine/backend.h (it
//                 includes the engine's headers; the engine reaches it only through make_cuda_backend,
//                 declared in backend.h and resolved at link time), so it sits above the engine
//   csrc/addon    the Node-API layer (the only code that includes <napi.h>)
//   native-tests/ self-tests, CUDA checks, fuzz drivers: may include anything
//
// A file may include its own layer or a lower one; an #include that points up fails, and so does a
// cycle among files (within a layer too). Quoted includes resolve against csrc/, the repository root,
// then the including file's folder; one that resolves nowhere fails (a typo would hide an arrow).
// Also fails: <napi.h> outside csrc/addon.
//
//   node scripts/check-includes.mjs          exit 0 when the graph is clean; prints each problem
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LAYERS = ['csrc/core', 'csrc/model', 'csrc/kernels', 'csrc/cache', 'csrc/engine', 'cuda', 'csrc/addon', 'native-tests'];
const SOURCE = /\.(cc|cu|h|cuh|inc)$/;

function walk(dir, out = []) {
  for (const e of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) walk(rel, out);
    else if (SOURCE.test(e.name)) out.push(rel);
  }
  return out;
}

function layerOf(file) {
  const i = LAYERS.findIndex((l) => file === l || file.startsWith(`${l}/`));
  return i;
}

const files = ['csrc', 'cuda', 'native-tests'].filter((d) => existsSync(path.join(root, d))).flatMap((d) => walk(d)).sort();
const problems = [];
const graph = new Map();
let edges = 0;

for (const file of files) {
  const rank = layerOf(file);
  if (rank < 0) {
    problems.push(`${file}: in no layer (add its folder to LAYERS in scripts/check-includes.mjs)`);
    continue;
  }
  const deps = [];
  const lines = readFileSync(path.join(root, file), 'utf8').split('\n');
  lines.forEach((line, n) => {
    const angle = /^\s*#\s*include\s*<([^>]+)>/.exec(line);
    if (angle && angle[1] === 'napi.h' && LAYERS[rank] !== 'csrc/addon') {
      problems.push(`${file}:${n + 1}: includes <napi.h> outside csrc/addon`);
    }
    const m = /^\s*#\s*include\s*"([^"]+)"/.exec(line);
    if (!m) return;
    const inc = m[1];
    const target = [path.posix.join('csrc', inc), inc, path.posix.join(path.posix.dirname(file), inc)].find((c) =>
      existsSync(path.join(root, c)),
    );
    if (!target) {
      problems.push(`${file}:${n + 1}: "${inc}" resolves to no file`);
      return;
    }
    edges++;
    deps.push(target);
    const to = layerOf(target);
    if (to < 0) return;  // outside the layered folders (third_party): not an arrow of ours
    if (to > rank) {
      problems.push(`${file}:${n + 1}: includes "${inc}": ${LAYERS[rank]} may not include ${LAYERS[to]} (it is above)`);
    }
  });
  graph.set(file, deps);
}

// Cycles among files: depth-first search, reporting each back edge's cycle once.
const state = new Map();  // 1: on the stack, 2: done
const stack = [];
const seen = new Set();
function visit(f) {
  state.set(f, 1);
  stack.push(f);
  for (const d of graph.get(f) ?? []) {
    if (state.get(d) === 1) {
      const cycle = stack.slice(stack.indexOf(d)).concat(d);
      const key = [...cycle].slice(0, -1).sort().join(' ');
      if (!seen.has(key)) {
        seen.add(key);
        problems.push(`include cycle: ${cycle.join(' -> ')}`);
      }
    } else if (!state.has(d)) {
      visit(d);
    }
  }
  stack.pop();
  state.set(f, 2);
}
for (const f of graph.keys()) if (!state.has(f)) visit(f);

if (problems.length) {
  for (const p of problems) console.error(`check-includes: ${p}`);
  console.error(`check-includes: FAILED (${problems.length} problems in ${files.length} files)`);
  process.exit(1);
}
console.log(`check-includes: ${files.length} files, ${edges} includes, all pointing down (${LAYERS.join(' < ')}), no cycle`);
