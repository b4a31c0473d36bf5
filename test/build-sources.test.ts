// binding.gyp (node-gyp, prebuilds) and CMakeLists.txt (cmake-js) must build the same CPU sources, and
// every .cc under csrc/ must be in both, except the CUDA addon's own N-API file (CMake only, its
// NEMOTRON_CUDA_ADDON_SOURCES). The native self-tests live in native-tests/, outside csrc/.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');

function gypTarget(name: string): string[] {
  const text = readFileSync(path.join(root, 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, '');
  const gyp = JSON.parse(text) as { targets: Array<{ target_name: string; sources: string[] }> };
  return gyp.targets.find((t) => t.target_name === name)!.sources.slice().sort();
}
const gypSources = () => gypTarget('nemotron_node');

function cmakeSources(): string[] {
  const text = readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
  const lists = [...text.matchAll(/set\((NEMOTRON_(?:ENGINE|ADDON)_SOURCES)([\s\S]*?)\)/g)];
  expect(lists.map((m) => m[1])).toEqual(['NEMOTRON_ENGINE_SOURCES', 'NEMOTRON_ADDON_SOURCES']);
  return lists.flatMap((m) => m[2]!.split(/\s+/).filter((s) => s.endsWith('.cc'))).sort();
}

function ccFiles(top: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.cc')) out.push(rel);
    }
  };
  walk(top);
  return out.sort();
}
const csrcFiles = () => ccFiles('csrc');

function cmakeCudaAddonSources(): string[] {
  const text = readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
  const m = /set\(NEMOTRON_CUDA_ADDON_SOURCES([\s\S]*?)\)/.exec(text);
  return m ? m[1]!.split(/\s+/).filter((s) => s.endsWith('.cc')).sort() : [];
}

// The vendored grammar engine (third_party/xgrammar): its own static library in both build files.
function cmakeXgrammarSources(): string[] {
  const text = readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
  const m = /set\(XGRAMMAR_SOURCES([\s\S]*?)\)/.exec(text);
  return m ? m[1]!.split(/\s+/).filter((s) => s.endsWith('.cc')).sort() : [];
}

describe('build files', () => {
  it('binding.gyp and CMakeLists.txt list the same sources', () => {
    expect(gypSources()).toEqual(cmakeSources());
  });
  it('every csrc/**/*.cc is built: by both, or (the CUDA addon N-API file) by CMake for the CUDA addon', () => {
    expect(cmakeCudaAddonSources()).toEqual(['csrc/addon/cuda_addon.cc']);
    expect([...gypSources(), ...cmakeCudaAddonSources()].sort()).toEqual(csrcFiles());
  });
  it('both build the vendored XGrammar from the same list: every third_party/xgrammar/cpp/**/*.cc', () => {
    expect(gypTarget('xgrammar')).toEqual(cmakeXgrammarSources());
    expect(gypTarget('xgrammar')).toEqual(ccFiles('third_party/xgrammar/cpp'));
    expect(gypTarget('xgrammar').length).toBeGreaterThan(15);
  });
  it('package.json declares the N-API version cmake-js needs to build offline', () => {
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { binary?: { napi_versions?: number[] } };
    expect(pkg.binary?.napi_versions).toContain(8);
  });
});
