/**
 * Finds the CUDA addon (nemotron_node_cuda.node: the same N-API surface as the CPU addon over the
 * engine built with the CUDA backend, plus `cudaDeviceCount()`, `cudaInfo()` and `_cudaKernels`) and
 * decides whether this process can use it.
 *
 * Where: the NEMOTRON_NODE_CUDA_BINARY environment variable (an explicit .node path), else
 * build-cuda/Release/nemotron_node_cuda.node (`npx cmake-js compile -O build-cuda --CDNEMOTRON_CUDA=ON`),
 * else build/Release/nemotron_node_cuda.node (a plain `npx cmake-js compile` on a machine with nvcc),
 * else the prebuilt binary of the optional package @nemotron-node/linux-x64-cuda (packages/linux-x64-cuda:
 * npm installs it next to nemotron-node on Linux x64 glibc only).
 *
 * How: the binary is first loaded in a child process that calls cudaInfo(), so that a missing or too
 * old driver, a binary built for other GPUs or a crash while loading costs a reason string, not this
 * process. The binary links the CUDA runtime statically: it needs only the NVIDIA driver, one that
 * supports the CUDA major version it was built with (cudaInfo().requiredDriverVersion; 13.0 for the
 * CUDA 13 builds: Linux driver 580 or later). An older driver is a DriverTooOldError. Only when the
 * child saw at least one device is the addon loaded here. The answer is cached per binary path.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import type { NativeAddon, NativeEngine, NativeEngineOptions, SsmKernelParams } from './addon-types.js';
import { moduleUrl } from './module-url.js';
import { loadNative, nativeBinaryPath, packageRoot } from './native.js';

const requireHere = createRequire(moduleUrl);

/** NativeEngineOptions plus the device the engine runs on ('cuda' is 'cuda:0'). */
export type CudaEngineOptions = NativeEngineOptions & { device: 'cpu' | 'cuda' | `cuda:${number}` };

/** Every CUDA kernel on typed arrays, with the argument conventions of NativeKernels (csrc/addon/cuda_addon.cc). */
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

/** One CUDA device as cudaInfo() describes it. */
export interface CudaDeviceInfo {
  index: number;
  name: string;
  /** '8.0', '9.0', ... */
  computeCapability?: string;
  totalMemory?: number;
  multiprocessors?: number;
  /** 'GPU-…' as nvidia-smi prints it. */
  uuid?: string;
}

/** The CUDA runtime, driver and devices as the CUDA addon sees them (csrc/addon/cuda_addon.cc cudaInfo). */
export interface CudaInfo {
  /** The CUDA toolkit the binary was built with (linked statically), e.g. 13000 for 13.0. */
  runtimeVersion: number;
  /** The oldest driver CUDA version that runs it (major.0: minor version compatibility), e.g. 13000. */
  requiredDriverVersion: number;
  /** The newest CUDA version the installed driver supports; 0 when there is no NVIDIA driver. */
  driverVersion: number;
  /** The GPU architectures compiled in (CMAKE_CUDA_ARCHITECTURES), e.g. '80-real,86-real,89-real,90-real,90-virtual'. */
  archs: string;
  deviceCount: number;
  /** Why no device could be counted (CUDA's error name and text). */
  error?: string;
  devices: CudaDeviceInfo[];
}

export interface CudaAddon extends Omit<NativeAddon, 'loadEngine'> {
  loadEngine(path: string, options: CudaEngineOptions): Promise<NativeEngine>;
  /** CUDA devices visible to this process (throws with CUDA's reason when the runtime cannot start). */
  cudaDeviceCount(): number;
  /** Never throws. */
  cudaInfo(): CudaInfo;
  _cudaKernels: CudaKernels;
}

/**
 * A usable CUDA addon, or why there is none. `driverTooOld` is set when the reason is the driver's
 * version (a DriverTooOldError for device: 'cuda'). `engineDevice` is the device string engines of this
 * addon are made with ('cuda' normally; 'cpu' under the NEMOTRON_NODE_FAKE_CUDA test hook).
 */
export type CudaProbe =
  | { addon: CudaAddon; binary: string; deviceCount: number; info: CudaInfo; engineDevice: string }
  | { reason: string; driverTooOld?: { required: number; found: number }; info?: CudaInfo; binary?: string };

/** 13000 -> '13.0'. */
export function cudaVersionString(v: number): string {
  return v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'none';
}

/**
 * The Linux driver release that first supports a CUDA major version (NVIDIA's CUDA Toolkit release
 * notes, table 3: CUDA 12.x needs >= 525.60.13, 13.x >= 580.65.06).
 */
export function minimumLinuxDriver(cudaVersion: number): string {
  const major = Math.floor(cudaVersion / 1000);
  return major >= 13 ? '580.65.06' : major === 12 ? '525.60.13' : 'unknown';
}

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

/** Tests: forget that the fallback line was printed. */
export function resetCpuFallbackNote(): void {
  noted.clear();
}

/** The paths tried, in order. */
export function cudaBinaryCandidates(): string[] {
  const override = process.env.NEMOTRON_NODE_CUDA_BINARY;
  if (override) return [path.resolve(override)];
  const found = [
    path.join(packageRoot, 'build-cuda', 'Release', 'nemotron_node_cuda.node'),
    path.join(packageRoot, 'build', 'Release', 'nemotron_node_cuda.node'),
  ];
  const pkg = cudaPackageBinary();
  if (pkg) found.push(pkg);
  return found;
}

/** The optional package that carries the prebuilt CUDA binary (packages/linux-x64-cuda). */
export const CUDA_PACKAGE = '@nemotron-node/linux-x64-cuda';

/** Where the optional CUDA package's binary is, when npm installed the package (Linux x64 glibc only). */
export function cudaPackageBinary(): string | undefined {
  try {
    const dir = path.dirname(requireHere.resolve(`${CUDA_PACKAGE}/package.json`));
    return path.join(dir, 'nemotron_node_cuda.node');
  } catch {
    return undefined;
  }
}

const cache = new Map<string, CudaProbe>();

// Run by the child: load, ask the runtime, driver and devices, print one JSON line.
const PROBE = `
let out;
try {
  const a = require(process.argv[1]);
  if (typeof a.cudaInfo !== 'function') throw new Error('it has no cudaInfo(): not a CUDA build of nemotron-node');
  out = { info: a.cudaInfo() };
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
  if (process.env.NEMOTRON_NODE_FAKE_CUDA === 'cpu' && !options.binary) return fakeCudaProbe();
  const candidates = options.binary ? [path.resolve(options.binary)] : cudaBinaryCandidates();
  const binary = candidates.find((p) => existsSync(p));
  if (!binary) {
    return { reason: `no CUDA build of the addon (looked for ${candidates.join(', ')}; on Linux x64 glibc npm installs the prebuilt @nemotron-node/linux-x64-cuda with nemotron-node, or build it with \`npx cmake-js compile -O build-cuda --CDNEMOTRON_CUDA=ON\`)` };
  }
  const cached = cache.get(binary);
  if (cached) return cached;
  const probe = probeChild(binary, options.timeoutMs ?? 60_000);
  let result: CudaProbe;
  if ('reason' in probe) {
    result = { ...probe, binary };
  } else {
    try {
      const addon = requireHere(binary) as CudaAddon;
      result = { addon, binary, deviceCount: probe.info.deviceCount, info: probe.info, engineDevice: 'cuda' };
    } catch (cause) {
      result = { reason: `${binary} passed its probe but failed to load here: ${(cause as Error).message}` };
    }
  }
  cache.set(binary, result);
  return result;
}

function probeChild(binary: string, timeoutMs: number): { info: CudaInfo } | Exclude<CudaProbe, { addon: CudaAddon }> {
  const r = spawnSync(process.execPath, ['-e', PROBE, binary], { encoding: 'utf8', timeout: timeoutMs, env: process.env });
  if (r.error) return { reason: `probing ${binary} failed: ${r.error.message}` };
  if (r.status !== 0) {
    const why = r.signal ? `was killed by ${r.signal}` : `exited with status ${r.status}`;
    return { reason: `loading ${binary} in a child process ${why}${r.stderr ? `: ${r.stderr.trim().split('\n').slice(-3).join(' ')}` : ''}` };
  }
  let parsed: { info?: CudaInfo; error?: string };
  try {
    parsed = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as typeof parsed;
  } catch {
    return { reason: `probing ${binary} printed no answer` };
  }
  if (parsed.error !== undefined || !parsed.info) return { reason: `${binary}: ${parsed.error ?? 'no answer'}` };
  return judgeCudaInfo(binary, parsed.info);
}

/** Whether what cudaInfo() says makes the binary usable: a driver, new enough, and a device. */
export function judgeCudaInfo(binary: string, info: CudaInfo): { info: CudaInfo } | Exclude<CudaProbe, { addon: CudaAddon }> {
  const built = `built with CUDA ${cudaVersionString(info.runtimeVersion)}, which needs an NVIDIA driver for CUDA ${cudaVersionString(info.requiredDriverVersion)} or later (Linux driver >= ${minimumLinuxDriver(info.requiredDriverVersion)})`;
  if (info.driverVersion === 0) {
    return { reason: `${binary} loads, but there is no NVIDIA driver (libcuda.so.1 not found)${info.error ? `: ${info.error}` : ''}`, info };
  }
  if (info.driverVersion < info.requiredDriverVersion) {
    return {
      reason: `${binary} is ${built}; the installed driver supports CUDA ${cudaVersionString(info.driverVersion)} only: update the NVIDIA driver`,
      driverTooOld: { required: info.requiredDriverVersion, found: info.driverVersion },
      info,
    };
  }
  if (info.error !== undefined) return { reason: `${binary}: ${info.error}`, info };
  if (!info.deviceCount) return { reason: `${binary} loads, but no CUDA device is visible`, info };
  return { info };
}

/**
 * Test hook (CI has no GPU): NEMOTRON_NODE_FAKE_CUDA=cpu makes the CPU addon stand in for the CUDA one,
 * engines made on device 'cpu', so that loadModel's whole device path (self-check, its cache, the typed
 * errors and the fallback) runs CPU against CPU. Never set it in production.
 */
function fakeCudaProbe(): CudaProbe {
  const addon = loadNative() as unknown as CudaAddon;
  const info: CudaInfo = {
    runtimeVersion: 0,
    requiredDriverVersion: 0,
    driverVersion: 0,
    archs: 'none (NEMOTRON_NODE_FAKE_CUDA=cpu)',
    deviceCount: 1,
    devices: [{ index: 0, name: 'CPU standing in for a GPU (NEMOTRON_NODE_FAKE_CUDA=cpu)', computeCapability: 'n/a', uuid: 'fake-cpu' }],
  };
  return { addon, binary: nativeBinaryPath() ?? 'cpu-addon', deviceCount: 1, info, engineDevice: 'cpu' };
}
