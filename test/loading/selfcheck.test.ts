// The GPU self-check (lib/selfcheck.ts, lib/device.ts; issue #16) where there is no GPU: the same code
// runs CPU against CPU, and a perturbed "device" output (one logit moved by 4 x the tolerance, or one
// sampled token changed) must make it fail. loadModel's whole device path (probe, self-check, its cache,
// the typed errors and the 'auto' fallback) runs with the NEMOTRON_NODE_FAKE_CUDA=cpu test hook, the CPU
// addon standing in for the CUDA one. The check on a real GPU is at the end, skipped by name without one.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { judgeCudaInfo, loadCudaAddon, resetCpuFallbackNote, type CudaInfo } from '../../lib/cuda.js';
import { DriverTooOldError, SelfCheckError } from '../../lib/errors.js';
import { loadNative } from '../../lib/native.js';
import { SELF_CHECK_TOLERANCES, runSelfCheck } from '../../lib/selfcheck.js';

const cache = mkdtempSync(path.join(os.tmpdir(), 'nemo-selfcheck-'));
const saved = { ...process.env };
beforeAll(() => {
  process.env.NEMOTRON_NODE_CACHE = cache;
});
afterEach(() => {
  for (const k of ['NEMOTRON_NODE_FAKE_CUDA', 'NEMOTRON_NODE_SELFCHECK_PERTURB']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  resetCpuFallbackNote();
});
afterAll(() => {
  if (saved.NEMOTRON_NODE_CACHE === undefined) delete process.env.NEMOTRON_NODE_CACHE;
  else process.env.NEMOTRON_NODE_CACHE = saved.NEMOTRON_NODE_CACHE;
  rmSync(cache, { recursive: true, force: true });
});

const cpuDevice = () => ({ addon: loadNative(), engineDevice: 'cpu', name: 'cpu standing in for a GPU' });

describe('self-check, CPU against CPU (the comparison code, no GPU needed)', () => {
  it('passes, with the figures of each precision within their tolerances', async () => {
    const r = await runSelfCheck({ device: cpuDevice(), perturb: 'none' });
    expect(r.error).toBeUndefined();
    expect(r.differences).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.figures.map((f) => f.precision)).toEqual(['exact', 'fast']);
    const [exact, fast] = r.figures;
    // The same engine in the same precision: identical results.
    expect(exact!.prefillMaxDiff).toBe(0);
    expect(exact!.decodeMaxDiff).toBe(0);
    expect(exact!.restoreMaxDiff).toBe(0);
    expect(exact!.restoreSelfDiff).toBe(0);
    expect(exact!.samplerDraws).toBe(16);
    expect(exact!.samplerMismatches).toBe(0);
    expect(exact!.greedyMismatches).toBe(0);
    expect(fast!.tolerance).toBe(SELF_CHECK_TOLERANCES.fast);
    expect(fast!.decodeMaxDiff).toBeLessThan(SELF_CHECK_TOLERANCES.fast);
    console.log(`self-check CPU vs CPU: ${Math.round(r.ms)} ms; fast: prefill ${fast!.prefillMaxDiff.toExponential(2)}, decode ${fast!.decodeMaxDiff.toExponential(2)}`);
  }, 120_000);

  it('fails when the device side\'s logits are perturbed (one logit of the first decode row + 4 x tolerance)', async () => {
    const r = await runSelfCheck({ device: cpuDevice(), perturb: 'logprob', precisions: ['exact'] });
    expect(r.ok).toBe(false);
    const checks = r.differences.map((d) => d.check);
    expect(checks).toContain('decode log-probs');
    expect(checks).toContain('restored sequence vs its original');
    const d = r.differences.find((x) => x.check === 'decode log-probs')!;
    expect(d.precision).toBe('exact');
    expect(d.tolerance).toBe(SELF_CHECK_TOLERANCES.exact);
    expect(d.measured).toBeGreaterThan(2 * SELF_CHECK_TOLERANCES.exact);
    expect(d.measured).toBeLessThan(5 * SELF_CHECK_TOLERANCES.exact);
    // The prefill was not perturbed and still matches exactly.
    expect(r.figures[0]!.prefillMaxDiff).toBe(0);
  }, 120_000);

  it('fails when one token sampled on the device side differs', async () => {
    const r = await runSelfCheck({ device: cpuDevice(), perturb: 'token', precisions: ['exact'] });
    expect(r.ok).toBe(false);
    expect(r.differences).toEqual([{ check: 'sampled tokens', precision: 'exact', measured: 1, tolerance: 0 }]);
  }, 120_000);
});

describe('a device that cannot run the check', () => {
  it('is a failed report with the error, not an exception', async () => {
    const broken = { addon: { loadEngine: () => Promise.reject(new Error('cudaErrorNoKernelImageForDevice: no kernel image is available')) }, engineDevice: 'cuda', name: 'GPU X' };
    const r = await runSelfCheck({ device: broken, perturb: 'none' });
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/^GPU X: cudaErrorNoKernelImageForDevice/);
    expect(r.figures).toEqual([]);
  }, 60_000);
});

describe('the CUDA driver check', () => {
  const info = (driverVersion: number, deviceCount = 1): CudaInfo => ({
    runtimeVersion: 13000,
    requiredDriverVersion: 13000,
    driverVersion,
    archs: '80-real',
    deviceCount,
    devices: deviceCount ? [{ index: 0, name: 'GPU', computeCapability: '9.0' }] : [],
  });
  it('refuses a driver older than the CUDA major version the binary was built with, naming the Linux release', () => {
    const r = judgeCudaInfo('/x/nemotron_node_cuda.node', info(12040));
    expect('driverTooOld' in r && r.driverTooOld).toEqual({ required: 13000, found: 12040 });
    expect('reason' in r && r.reason).toMatch(/built with CUDA 13\.0.*Linux driver >= 580\.65\.06.*supports CUDA 12\.4 only/);
    const err = new DriverTooOldError('x', 13000, 12040);
    expect(err.code).toBe('ERR_CUDA_DRIVER');
    expect(err.name).toBe('DriverTooOldError');
  });
  it("loadModel: device 'cuda' with a too old driver is a DriverTooOldError (ERR_CUDA_DRIVER); 'auto' falls back with one line", async () => {
    // A stand-in binary: the probe require()s it in a child process, as it does the real .node file.
    const { writeFileSync } = await import('node:fs');
    const fake = path.join(cache, 'old-driver-addon.cjs');
    writeFileSync(fake, `module.exports = { cudaInfo: () => (${JSON.stringify(info(12040))}) };\n`);
    const savedBinary = process.env.NEMOTRON_NODE_CUDA_BINARY;
    process.env.NEMOTRON_NODE_CUDA_BINARY = fake;
    const lines: string[] = [];
    const warn = console.warn;
    try {
      const { loadModel } = await import('../../lib/index.js');
      const { defaultModelPath } = await import('../../lib/default-model.js');
      const dir = await defaultModelPath();
      const err = await loadModel(dir, { threads: 1, device: 'cuda' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DriverTooOldError);
      expect(err).toMatchObject({ code: 'ERR_CUDA_DRIVER', requiredDriverVersion: 13000, driverVersion: 12040 });
      expect((err as Error).message).toMatch(/needs an NVIDIA driver for CUDA 13\.0 or later \(Linux driver >= 580\.65\.06\); the installed driver supports CUDA 12\.4 only/);
      console.warn = (...a: unknown[]) => void lines.push(a.map(String).join(' '));
      const m = await loadModel(dir, { threads: 1, device: 'auto' });
      expect(m.info.backend).toBe('cpu');
      await m.close();
    } finally {
      console.warn = warn;
      if (savedBinary === undefined) delete process.env.NEMOTRON_NODE_CUDA_BINARY;
      else process.env.NEMOTRON_NODE_CUDA_BINARY = savedBinary;
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/device 'auto' is using the CPU \(.*supports CUDA 12\.4 only: update the NVIDIA driver\)/);
  }, 60_000);
  it('accepts a newer minor or major driver; no driver and no device are reasons, not driver errors', () => {
    expect(judgeCudaInfo('b', info(13020))).toEqual({ info: info(13020) });
    expect(judgeCudaInfo('b', info(14000))).toEqual({ info: info(14000) });
    const none = judgeCudaInfo('b', info(0, 0));
    expect('reason' in none && none.reason).toMatch(/no NVIDIA driver/);
    expect('driverTooOld' in none).toBe(false);
    const noGpu = judgeCudaInfo('b', info(13000, 0));
    expect('reason' in noGpu && noGpu.reason).toMatch(/no CUDA device is visible/);
  });
});

describe("loadModel's device path with the CPU standing in for the GPU (NEMOTRON_NODE_FAKE_CUDA=cpu)", () => {
  let dir: string;
  beforeAll(async () => {
    const { defaultModelPath } = await import('../../lib/default-model.js');
    dir = await defaultModelPath();
  });

  it("device 'cuda' runs the self-check, caches the pass, and loads", async () => {
    process.env.NEMOTRON_NODE_FAKE_CUDA = 'cpu';
    expect('addon' in loadCudaAddon()).toBe(true);
    const { loadModel } = await import('../../lib/index.js');
    const m = await loadModel(dir, { threads: 1, device: 'cuda' });
    expect(m.info.backend).toBe('cpu');
    await m.close();
    expect(readdirSync(path.join(cache, 'selfcheck')).filter((f) => f.endsWith('.json'))).toHaveLength(1);
  }, 120_000);

  it("a perturbed device: 'cuda' throws SelfCheckError with the measured differences; 'auto' uses the CPU with one log line", async () => {
    process.env.NEMOTRON_NODE_FAKE_CUDA = 'cpu';
    process.env.NEMOTRON_NODE_SELFCHECK_PERTURB = 'logprob';
    const { loadModel } = await import('../../lib/index.js');
    const err = await loadModel(dir, { threads: 1, device: 'cuda' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SelfCheckError);
    const s = err as SelfCheckError;
    expect(s.code).toBe('ERR_DEVICE_SELF_CHECK');
    expect(s.message).toMatch(/self-check .* against the CPU failed: decode log-probs \(exact\): [34]\.\d+e-3 > 0\.001/);
    expect(s.differences.some((d) => d.check === 'decode log-probs' && d.precision === 'exact')).toBe(true);

    const lines: string[] = [];
    const warn = console.warn;
    console.warn = (...a: unknown[]) => void lines.push(a.map(String).join(' '));
    try {
      for (let i = 0; i < 2; i++) {
        const m = await loadModel(dir, { threads: 1, device: 'auto' });
        expect(m.info.backend).toBe('cpu');
        await m.close();
      }
    } finally {
      console.warn = warn;
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/device 'auto' is using the CPU \(the self-check .* failed: decode log-probs/);
  }, 180_000);

  it("selfCheck 'cached' trusts the cached pass (even with the perturbation now on); 'run' checks again", async () => {
    process.env.NEMOTRON_NODE_FAKE_CUDA = 'cpu';
    const { loadModel } = await import('../../lib/index.js');
    // A pass for this binary, device and driver (the first test of this block may not have run alone).
    await (await loadModel(dir, { threads: 1, device: 'cuda', selfCheck: 'run' })).close();
    process.env.NEMOTRON_NODE_SELFCHECK_PERTURB = 'token';
    const t0 = performance.now();
    const m = await loadModel(dir, { threads: 1, device: 'cuda', selfCheck: 'cached' });
    const cachedMs = performance.now() - t0;
    await m.close();
    const off = await loadModel(dir, { threads: 1, device: 'cuda', selfCheck: 'off' });
    await off.close();
    await expect(loadModel(dir, { threads: 1, device: 'cuda', selfCheck: 'run' })).rejects.toMatchObject({
      code: 'ERR_DEVICE_SELF_CHECK',
      differences: [
        { check: 'sampled tokens', precision: 'exact', measured: 1, tolerance: 0 },
        { check: 'sampled tokens', precision: 'fast', measured: 1, tolerance: 0 },
      ],
    });
    console.log(`load with a cached self-check pass: ${Math.round(cachedMs)} ms`);
  }, 180_000);

  it('rejects an unknown selfCheck value', async () => {
    const { loadModel } = await import('../../lib/index.js');
    await expect(loadModel(dir, { selfCheck: 'sometimes' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it('doctor reports the stand-in device and the check figures', async () => {
    process.env.NEMOTRON_NODE_FAKE_CUDA = 'cpu';
    const { doctor, formatDoctor } = await import('../../lib/doctor.js');
    const r = await doctor({ bench: false });
    expect(r.usable).toBe(true);
    expect(r.selfCheck?.ok).toBe(true);
    const text = formatDoctor(r);
    expect(text).toMatch(/self-check {3}PASS/);
    expect(text).toMatch(/exact max \|dlogp\| prefill 0, decode 0, restore 0 \(tol 0\.001\)/);
  }, 120_000);
});

describe('nemotron-node doctor (the CLI)', () => {
  const root = path.resolve(import.meta.dirname, '../..');
  const run = async (args: string[], env: Record<string, string> = {}) => {
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli.ts'), 'doctor', ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', NEMOTRON_NODE_CACHE: cache, ...env } });
    return { code: r.status, out: `${r.stdout}${r.stderr}` };
  };
  it('without a GPU: reports why, runs no self-check, exits 0 (1 with --require-gpu)', async () => {
    const bogus = path.join(cache, 'no-such-cuda-addon.node');
    const plain = await run(['--no-bench'], { NEMOTRON_NODE_CUDA_BINARY: bogus });
    expect(plain.code).toBe(0);
    expect(plain.out).toMatch(/^cuda binary {2}none \(looked for .*no-such-cuda-addon\.node\)$/m);
    expect(plain.out).toMatch(/^gpu {10}not usable: no CUDA build of the addon/m);
    expect(plain.out).toMatch(/^self-check {3}not run \(no usable GPU\)$/m);
    expect((await run(['--no-bench', '--require-gpu'], { NEMOTRON_NODE_CUDA_BINARY: bogus })).code).toBe(1);
  }, 60_000);
  it('with the CPU standing in for the GPU: the figures, the benchmark, and exit 1 when the check fails', async () => {
    const ok = await run(['--json'], { NEMOTRON_NODE_FAKE_CUDA: 'cpu' });
    expect(ok.code).toBe(0);
    const report = JSON.parse(ok.out.slice(ok.out.indexOf('{'))) as { selfCheck: { ok: boolean; figures: unknown[] }; bench: { device: string; decodeTokensPerSecond: number }[] };
    expect(report.selfCheck.ok).toBe(true);
    expect(report.selfCheck.figures).toHaveLength(2);
    expect(report.bench.map((b) => b.device)).toEqual(['cpu', 'cpu']);
    expect(report.bench[0]!.decodeTokensPerSecond).toBeGreaterThan(0);
    const bad = await run(['--no-bench'], { NEMOTRON_NODE_FAKE_CUDA: 'cpu', NEMOTRON_NODE_SELFCHECK_PERTURB: 'token' });
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/^self-check {3}FAIL on .* against the CPU in \d+ ms: sampled tokens \(exact\): 1 > 0; sampled tokens \(fast\): 1 > 0$/m);
  }, 120_000);
});

// On a GPU (a CUDA build that sees a device): the real thing. Skipped, by name, everywhere else.
const probe = loadCudaAddon();
const gpu = 'addon' in probe && process.env.NEMOTRON_NODE_FAKE_CUDA === undefined;
if (!gpu) console.log(`GPU self-check tests skipped: ${'reason' in probe ? probe.reason : 'NEMOTRON_NODE_FAKE_CUDA is set'}`);
describe.skipIf(!gpu)('self-check on the GPU', () => {
  it('passes against the CPU within the stated tolerances, in under 2 s', async () => {
    if (!('addon' in probe)) return;
    const { defaultModelPath } = await import('../../lib/default-model.js');
    await defaultModelPath();
    const r = await runSelfCheck({ device: { addon: probe.addon, engineDevice: 'cuda', name: probe.info.devices[0]?.name ?? 'cuda' }, perturb: 'none' });
    console.log(JSON.stringify(r.figures));
    expect(r.error).toBeUndefined();
    expect(r.differences).toEqual([]);
    expect(r.ms).toBeLessThan(2000);
  }, 60_000);
  it('fails on the GPU when the device output is perturbed', async () => {
    if (!('addon' in probe)) return;
    const r = await runSelfCheck({ device: { addon: probe.addon, engineDevice: 'cuda' }, perturb: 'logprob', precisions: ['exact'] });
    expect(r.ok).toBe(false);
  }, 60_000);
  it('doctor prints the device, driver and compute capability', async () => {
    const { doctor, formatDoctor } = await import('../../lib/doctor.js');
    const text = formatDoctor(await doctor({ bench: true }));
    console.log(text);
    expect(text).toMatch(/compute capability \d+\.\d+/);
    expect(text).toMatch(/self-check {3}PASS/);
  }, 120_000);
});

void existsSync;
