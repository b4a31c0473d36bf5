// The optional CUDA package (@nemotron-node/linux-x64-cuda, packages/linux-x64-cuda; issue #16) and the
// CPU package installed together into a fresh project on a machine without a GPU: scripts/cuda-pack-check.sh
// packs both (the CPU package with its published manifest: optionalDependencies on the CUDA one), installs
// the two tarballs with no compiler on the PATH, and shows device 'auto' falling back to the CPU with its one
// log line, device 'cuda' giving ERR_DEVICE_UNAVAILABLE, doctor, and npm honouring the CUDA package's
// os/cpu/libc fields. Its output lines are checked here.
//
// Needs the CUDA binary (bash scripts/build-cuda-package.sh, which needs nvcc; CI builds it), the CPU build
// (build/Release) and dist/. Without the CUDA binary the test is reported as skipped, by name, with the reason.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const cudaBinary = process.env.CUDA_BINARY ?? path.join(root, 'packages/linux-x64-cuda/nemotron_node_cuda.node');
const missing = [
  [cudaBinary, 'bash scripts/build-cuda-package.sh (needs nvcc)'],
  [path.join(root, 'build/Release/nemotron_node.node'), 'npx node-gyp rebuild'],
  [path.join(root, 'dist/index.js'), 'npm run build:ts'],
].filter(([p]) => !existsSync(p!));
const linuxX64 = process.platform === 'linux' && process.arch === 'x64';
if (!linuxX64) console.log('CUDA package test skipped: not Linux x64');
else if (missing.length) console.log(`CUDA package test skipped: missing ${missing.map(([p, how]) => `${p} (${how})`).join(', ')}`);

describe.skipIf(!linuxX64 || missing.length > 0)('the CPU and CUDA packages installed together without a GPU (scripts/cuda-pack-check.sh)', () => {
  it("npm places both; 'auto' falls back to the CPU with one log line, 'cuda' is ERR_DEVICE_UNAVAILABLE; os/cpu/libc are honoured", { timeout: 300_000 }, (ctx) => {
    const r = spawnSync('bash', [path.join(root, 'scripts/cuda-pack-check.sh')], { cwd: root, encoding: 'utf8', env: { ...process.env, CUDA_BINARY: cudaBinary } });
    const out = `${r.stdout}${r.stderr}`;
    if (r.status !== 0) throw new Error(`cuda-pack-check.sh exited ${r.status}:\n${out}`);
    const lines = out.split('\n').filter((l) => l.startsWith('cuda-pack-check: '));
    if (lines.some((l) => l.includes('this machine has a GPU'))) {
      ctx.skip();
      return;
    }
    const line = (re: RegExp): RegExpExecArray => {
      for (const l of lines) {
        const m = re.exec(l);
        if (m) return m;
      }
      throw new Error(`no line matching ${re} in:\n${out}`);
    };
    const cpu = line(/^cuda-pack-check: cpu tarball nemotron-node-[\d.]+\.tgz (\d+) bytes packed/);
    const gpu = line(/^cuda-pack-check: cuda tarball nemotron-node-linux-x64-cuda-[\d.]+\.tgz (\d+) bytes packed, \d+ unpacked, files README\.md,index\.d\.ts,index\.js,nemotron_node_cuda\.node,package\.json$/);
    // The CPU package stays small: the CUDA binary is in the other tarball only.
    expect(Number(cpu[1])).toBeLessThan(15_000_000);
    expect(Number(gpu[1])).toBeGreaterThan(500_000);
    console.log(`tarballs: CPU ${cpu[1]} bytes, CUDA ${gpu[1]} bytes`);
    line(/^cuda-pack-check: cpu package\.json optionalDependencies \{"@nemotron-node\/linux-x64-cuda":"[\d.]+"\}$/);
    line(/^cuda-pack-check: install of both tarballs [\d.]+ s: node_modules\/nemotron-node \(prebuilt CPU binary\) and node_modules\/@nemotron-node\/linux-x64-cuda$/);
    line(/^cuda-pack-check: auto log line: nemotron-node: device 'auto' is using the CPU \(.*node_modules\/@nemotron-node\/linux-x64-cuda\/nemotron_node_cuda\.node .*\)$/);
    line(/^cuda-pack-check: cuda error: DeviceUnavailableError ERR_DEVICE_UNAVAILABLE: device 'cuda' is not available: /);
    line(/^cuda-pack-check: doctor\| cuda binary {2}.*node_modules\/@nemotron-node\/linux-x64-cuda\/nemotron_node_cuda\.node$/);
    line(/^cuda-pack-check: doctor\| cuda {9}built with CUDA \d+\.\d+ \(runtime linked statically\)/);
    line(/^cuda-pack-check: doctor\| self-check {3}not run \(no usable GPU\)$/);
    line(/^cuda-pack-check: platform: as an optional dependency the CUDA package is linux-x64-glibc: installed; --cpu=arm64: skipped; --os=darwin: skipped; --libc=musl: skipped;/);
    const ok = line(/^cuda-pack-check: OK in ([\d.]+) s/);
    expect(Number(ok[1])).toBeLessThan(120);
  });
});
