/**
 * Finds the CUDA addon (nemotron_node_cuda.node: the same N-API surface as the CPU addon over the
 * engine built with the CUDA backend, plus `cudaDeviceCount()` and `_cudaKernels`) and decides whether
 * this process can use it.
 *
 * Where: the NEMOTRON_NODE_CUDA_BINARY environment variable (an explicit .node path), else
 * build-cuda/Release/nemotron_node_cuda.node (`npx cmake-js compile -O build-cuda --CDNEMOTRON_CUDA=ON`),
 * else build/Release/nemotron_node_cuda.node (a plain `npx cmake-js compile` on a machine with nvcc).
 *
 * How: the binary is first loaded in a child process that calls cudaDeviceCount(), so that a missing
 * or too old driver, a binary built for other GPUs or a crash while loading costs a reason string, not
 * this process. Only when the child saw at least one device is the addon loaded here. The answer is
 * cached per binary path.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import type { NativeAddon, NativeEngine, NativeEngineOptions, SsmKernelParams } from './addon-types.js';
import { moduleUrl } from './module-url.js';
import { packageRoot } from './native.js';

const requireHere = createRequire(moduleUrl);

/** NativeEngineOptions plus the device the engine runs on ('cuda' is 'cuda:0'). */
export type CudaEngineOptions = NativeEngineOptions & { device: 'cpu' | 'cuda' | `cuda:${number}` };

/** Every CUDA kernel on typed arrays, with the argument conventions of NativeKernels (cuda/addon_cuda.cc). */
export interface CudaKernels {
  matmul(x: Float32Array, T: number, K: number, w: Float32Array | Uint16Array | Uint8Array, dtype: 'F32' | 'BF16' | 'F16' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q5_K' | 'Q6_K', N: number): Float32Array;
  embedding(table: Float32Array | Uint16Array | Uint8Array, dtype: 'F32' | 'BF16' | 'F16' | 'Q8_0', rows: number, cols: number, ids: Int32Array): Float32Array;
  rmsnorm(x: Float32Array, T: number, C: number, w: Float32Array, eps: number): Float32Array;
  rmsnormGatedGrouped(y: Float32Array, z: Float32Array, T: number, C: number, groupSize: number, w: Float32Array, eps: number): Float32Array;
  conv1dCausal(x: Float32Array, T: number, C: number, w: Float32Array, K: number, b: Float32Array, state: Float32Array): { y: Float32Array; state: Float32Array };
  conv1dStep(x: Float32Array, C: number, w: Float32Array, K: number, b: Float32Array, state: Float32Array): { y: Float32Array; state: Float32Array };
  ssdChunkScan(x: Float32Array, dtRaw: Float32Array, B: Float32Array, C: Float32Array, p: SsmKernelParams, T: number, state: Float32Array, chunkSize: number): { y: Float32Array; state: Float32Array };
  ssmStateUpdate(x: Float32Array, dtRaw: Float32Array, B: Float32Array, C: Float32Array, p: SsmKernelParams, state: Float32Array): { y: Float32Array; state: Float32Array };
  attentionGqa(q: Float32Array, k: Float32Array, v: Float32Array, past: number, T: number, Hq: number, Hkv: number, Dh: number, paged?: { blockTokens?: number; dtype?: 'F32' | 'F16' | 'BF16'; shuffle?: boolean }): Float32Array;
  relu2(x: Float32Array): Float32Array;
  addInplace(y: Float32Array, x: Float32Array): Float32Array;
}

export interface CudaAddon extends Omit<NativeAddon, 'loadEngine'> {
  loadEngine(path: string, options: CudaEngineOptions): Promise<NativeEngine>;
  /** CUDA devices visible to this process (throws with CUDA's reason when the runtime cannot start). */
  cudaDeviceCount(): number;
  _cudaKernels: CudaKernels;
}

export type CudaProbe = { addon: CudaAddon; binary: string; deviceCount: number } | { reason: string };

const noted = new Set<string>();

/**
 * `device: 'auto'` fell back to the CPU: one log line per process (a server loading several models does
 * not repeat it), saying why — no CUDA build of the addon, or the reason its smoke test failed.
 */
export function noteCpuFallback(reason: string, log: (line: string) => void = console.warn): void {
  if (noted.size > 0) return;
  noted.add(reason);
  log(`nemotron-node: device 'auto' is using the CPU (${reason})`);
}

/** The paths tried, in order. */
export function cudaBinaryCandidates(): string[] {
  const override = process.env.NEMOTRON_NODE_CUDA_BINARY;
  if (override) return [path.resolve(override)];
  return [
    path.join(packageRoot, 'build-cuda', 'Release', 'nemotron_node_cuda.node'),
    path.join(packageRoot, 'build', 'Release', 'nemotron_node_cuda.node'),
  ];
}

const cache = new Map<string, CudaProbe>();

// Run by the child: load, count devices, print one JSON line.
const PROBE = `
let out;
try {
  const a = require(process.argv[1]);
  if (typeof a.cudaDeviceCount !== 'function') throw new Error('it has no cudaDeviceCount(): not a CUDA build of nemotron-node');
  out = { count: a.cudaDeviceCount() };
} catch (e) {
  out = { error: String(e && e.message || e) };
}
process.stdout.write(JSON.stringify(out) + '\\n');
`;

/**
 * The CUDA addon when a CUDA build exists and sees a device, else the reason it cannot be used.
 * Never throws. `binary` overrides the search; `timeoutMs` bounds the child's probe (default 60 s).
 */
export function loadCudaAddon(options: { binary?: string; timeoutMs?: number } = {}): CudaProbe {
  const candidates = options.binary ? [path.resolve(options.binary)] : cudaBinaryCandidates();
  const binary = candidates.find((p) => existsSync(p));
  if (!binary) {
    return { reason: `no CUDA build of the addon (looked for ${candidates.join(', ')}; build it with \`npx cmake-js compile -O build-cuda --CDNEMOTRON_CUDA=ON\`)` };
  }
  const cached = cache.get(binary);
  if (cached) return cached;
  const probe = probeChild(binary, options.timeoutMs ?? 60_000);
  let result: CudaProbe;
  if ('reason' in probe) {
    result = probe;
  } else {
    try {
      const addon = requireHere(binary) as CudaAddon;
      result = { addon, binary, deviceCount: probe.count };
    } catch (cause) {
      result = { reason: `${binary} passed its probe but failed to load here: ${(cause as Error).message}` };
    }
  }
  cache.set(binary, result);
  return result;
}

function probeChild(binary: string, timeoutMs: number): { count: number } | { reason: string } {
  const r = spawnSync(process.execPath, ['-e', PROBE, binary], { encoding: 'utf8', timeout: timeoutMs, env: process.env });
  if (r.error) return { reason: `probing ${binary} failed: ${r.error.message}` };
  if (r.status !== 0) {
    const why = r.signal ? `was killed by ${r.signal}` : `exited with status ${r.status}`;
    return { reason: `loading ${binary} in a child process ${why}${r.stderr ? `: ${r.stderr.trim().split('\n').slice(-3).join(' ')}` : ''}` };
  }
  let parsed: { count?: number; error?: string };
  try {
    parsed = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as typeof parsed;
  } catch {
    return { reason: `probing ${binary} printed no answer` };
  }
  if (parsed.error !== undefined) return { reason: `${binary}: ${parsed.error}` };
  if (!parsed.count) return { reason: `${binary} loads, but no CUDA device is visible` };
  return { count: parsed.count };
}
