/**
 * `npx nemotron-node doctor` (issue #16): what this machine can run. The CPU binary, the CUDA binary
 * found (a local build or @nemotron-node/linux-x64-cuda) with the CUDA version it was built with and the
 * driver it needs, the installed driver, each GPU's name, compute capability and memory, whether the
 * device is usable (and why not), the self-check's figures (lib/selfcheck.ts) and a small decode
 * benchmark of the built-in tiny model on the device and on the CPU.
 *
 * Exit status 1 when a GPU is usable but fails the self-check; no GPU is not an error, unless
 * --require-gpu (scripts/gpu-check.sh) asks for one.
 */
import os from 'node:os';

import { cudaBinaryCandidates, cudaVersionString, loadCudaAddon, minimumLinuxDriver, type CudaInfo } from './cuda.js';
import { defaultModelPath } from './default-model.js';
import { loadModel } from './model.js';
import { loadNative, nativeBinaryPath } from './native.js';
import { describeSelfCheck, runSelfCheck, type SelfCheckReport } from './selfcheck.js';
import { packageVersion } from './version.js';

export interface DoctorReport {
  package: string;
  node: string;
  platform: string;
  cpuBinary: string | undefined;
  cpuKernels: string;
  cudaBinary: string | undefined;
  cudaBinariesTried: string[];
  cuda: CudaInfo | undefined;
  /** The Linux driver release the CUDA binary needs. */
  requiredLinuxDriver: string | undefined;
  /** Whether device: 'cuda' can be used (before the self-check), and why not. */
  usable: boolean;
  reason: string | undefined;
  selfCheck: SelfCheckReport | undefined;
  /** Decode tokens/s of the tiny model (64 tokens after a 32-token prompt, best of 3). */
  bench: { device: string; decodeTokensPerSecond: number; prefillTokensPerSecond: number }[];
}

async function decodeBench(dir: string, device: 'cpu' | 'cuda'): Promise<{ device: string; decodeTokensPerSecond: number; prefillTokensPerSecond: number }> {
  const model = await loadModel(dir, { device, selfCheck: 'off', maxSequences: 1, ...(device === 'cpu' ? { threads: Math.min(4, os.availableParallelism()) } : {}) });
  try {
    const vocab = model.info.config.vocabSize;
    const logitBias = Object.fromEntries(model.info.eosTokenIds.map((id) => [id, -100]));
    let decode = 0;
    let prefill = 0;
    for (let r = 0; r < 3; r++) {
      // Another prompt each run: a repeated one would be served from the prefix cache.
      const prompt = Array.from({ length: 32 }, (_, i) => 1 + ((i * 7919 + r * 104729 + 13) % (vocab - 1)));
      const res = await model.generate({ prompt, maxTokens: 64, temperature: 0, logitBias });
      decode = Math.max(decode, res.timings.decodeTokensPerSecond);
      prefill = Math.max(prefill, res.timings.prefillTokensPerSecond);
    }
    return { device: model.info.backend, decodeTokensPerSecond: decode, prefillTokensPerSecond: prefill };
  } finally {
    await model.close();
  }
}

export async function doctor(options: { bench?: boolean } = {}): Promise<DoctorReport> {
  const probe = loadCudaAddon();
  const cuda = 'addon' in probe ? probe.info : probe.info;
  const report: DoctorReport = {
    package: `nemotron-node ${packageVersion()}`,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpuBinary: nativeBinaryPath(),
    cpuKernels: (() => {
      try {
        return loadNative()._kernels.kernelPath();
      } catch (err) {
        return `not loadable: ${(err as Error).message}`;
      }
    })(),
    cudaBinary: 'addon' in probe ? probe.binary : probe.binary,
    cudaBinariesTried: cudaBinaryCandidates(),
    cuda,
    requiredLinuxDriver: cuda && cuda.requiredDriverVersion > 0 ? minimumLinuxDriver(cuda.requiredDriverVersion) : undefined,
    usable: 'addon' in probe,
    reason: 'addon' in probe ? undefined : probe.reason,
    selfCheck: undefined,
    bench: [],
  };
  if ('addon' in probe) {
    const gpu = probe.info.devices[0];
    report.selfCheck = await runSelfCheck({ device: { addon: probe.addon, engineDevice: probe.engineDevice, name: `${gpu?.name ?? 'device'} (${probe.engineDevice})` } });
  }
  if (options.bench !== false) {
    const dir = await defaultModelPath();
    if (report.usable && report.selfCheck?.ok) report.bench.push(await decodeBench(dir, 'cuda'));
    report.bench.push(await decodeBench(dir, 'cpu'));
  }
  return report;
}

const e = (x: number) => (x === 0 ? '0' : x.toExponential(1));

export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  const line = (k: string, v: string) => lines.push(`${k.padEnd(13)}${v}`);
  line('package', `${r.package}, Node ${r.node}, ${r.platform}`);
  line('cpu binary', `${r.cpuBinary ?? 'not found'} (kernels: ${r.cpuKernels})`);
  line('cuda binary', r.cudaBinary ?? `none (looked for ${r.cudaBinariesTried.join(', ') || 'nothing'})`);
  if (r.cuda) {
    line('cuda', `built with CUDA ${cudaVersionString(r.cuda.runtimeVersion)} (runtime linked statically) for ${r.cuda.archs}; needs a driver for CUDA ${cudaVersionString(r.cuda.requiredDriverVersion)}+ (Linux >= ${r.requiredLinuxDriver ?? '?'})`);
    line('driver', r.cuda.driverVersion > 0 ? `supports CUDA ${cudaVersionString(r.cuda.driverVersion)}` : 'none (no NVIDIA driver: libcuda.so.1 not found)');
    if (r.cuda.devices.length === 0) line('devices', r.cuda.error ? `none (${r.cuda.error})` : 'none');
    for (const d of r.cuda.devices) {
      line(`device ${d.index}`, `${d.name}, compute capability ${d.computeCapability ?? '?'}${d.totalMemory ? `, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB` : ''}${d.multiprocessors ? `, ${d.multiprocessors} SMs` : ''}${d.uuid ? `, ${d.uuid}` : ''}`);
    }
  }
  line('gpu', r.usable ? 'usable' : `not usable: ${r.reason ?? 'unknown'}`);
  const s = r.selfCheck;
  if (!s) {
    line('self-check', 'not run (no usable GPU)');
  } else {
    line('self-check', `${s.ok ? 'PASS' : 'FAIL'} on ${s.device} against the CPU in ${Math.round(s.ms)} ms${s.ok ? '' : `: ${describeSelfCheck(s)}`}`);
    for (const f of s.figures) {
      line('', `${f.precision.padEnd(5)} max |dlogp| prefill ${e(f.prefillMaxDiff)}, decode ${e(f.decodeMaxDiff)}, restore ${e(f.restoreMaxDiff)} (tol ${f.tolerance}); restored = original ${e(f.restoreSelfDiff)}; greedy mismatches ${f.greedyMismatches}; sampled ${f.samplerDraws - f.samplerMismatches}/${f.samplerDraws} equal; ${Math.round(f.ms)} ms`);
    }
  }
  for (const b of r.bench) {
    line('bench', `tiny model on ${b.device}: decode ${b.decodeTokensPerSecond.toFixed(0)} tokens/s, prefill ${b.prefillTokensPerSecond.toFixed(0)} tokens/s (32-token prompt, 64 tokens, best of 3)`);
  }
  return lines.join('\n') + '\n';
}
