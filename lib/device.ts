/**
 * Which addon and device a model loads on (loadModel's `device` and `selfCheck` options), issue #16.
 *
 *   'cpu'  the CPU addon.
 *   'cuda' the CUDA addon (lib/cuda.ts: a local build or the optional @nemotron-node/linux-x64-cuda
 *          package), after its child-process probe (driver present and new enough, a device visible)
 *          and the self-check (lib/selfcheck.ts: the tiny model on the device against the CPU). Each
 *          failure is typed: DeviceUnavailableError (ERR_DEVICE_UNAVAILABLE: no binary, no driver, no
 *          GPU), DriverTooOldError (ERR_CUDA_DRIVER), SelfCheckError (ERR_DEVICE_SELF_CHECK, with the
 *          measured differences).
 *   'auto' the same, but every failure falls back to the CPU with one log line per process.
 *
 * The self-check's result is cached per binary (path, size, mtime), device (uuid) and driver in the cache
 * folder: selfCheck 'cached' trusts a pass found there, 'run' (default) always runs it, 'off' never does.
 */
import type { NativeAddon } from './addon-types.js';
import { loadCudaAddon, noteCpuFallback } from './cuda.js';
import { DeviceUnavailableError, DriverTooOldError, SelfCheckError } from './errors.js';
import { loadNative } from './native.js';
import { describeSelfCheck, readCachedSelfCheck, runSelfCheck, writeCachedSelfCheck, type SelfCheckKey, type SelfCheckReport } from './selfcheck.js';

export type SelfCheckMode = 'run' | 'cached' | 'off';

export interface ChosenDevice {
  addon: Pick<NativeAddon, 'loadEngine'>;
  /** NativeEngineOptions.device. */
  device: string;
  /** The self-check that admitted the device (absent for the CPU and with selfCheck 'off'). */
  selfCheck?: SelfCheckReport;
}

export async function chooseDevice(
  device: 'cpu' | 'cuda' | 'auto',
  options: { selfCheck?: SelfCheckMode; log?: (line: string) => void } = {},
): Promise<ChosenDevice> {
  if (device === 'cpu') return { addon: loadNative(), device: 'cpu' };
  const fallBack = (reason: string): ChosenDevice => {
    noteCpuFallback(reason, options.log);
    return { addon: loadNative(), device: 'cpu' };
  };
  const probe = loadCudaAddon();
  if (!('addon' in probe)) {
    if (device === 'auto') return fallBack(probe.reason);
    if (probe.driverTooOld) throw new DriverTooOldError(`device 'cuda' is not available: ${probe.reason}`, probe.driverTooOld.required, probe.driverTooOld.found);
    throw new DeviceUnavailableError(`device 'cuda' is not available: ${probe.reason}`);
  }
  const chosen: ChosenDevice = { addon: probe.addon, device: probe.engineDevice };
  const mode = options.selfCheck ?? 'run';
  if (mode === 'off') return chosen;
  const gpu = probe.info.devices[0];
  const key: SelfCheckKey = {
    binary: probe.binary,
    device: `${gpu?.uuid ?? 'unknown'} ${gpu?.name ?? ''}`,
    driverVersion: probe.info.driverVersion,
    runtimeVersion: probe.info.runtimeVersion,
  };
  let report = mode === 'cached' ? readCachedSelfCheck(key) : undefined;
  if (!report) {
    report = await runSelfCheck({ device: { addon: chosen.addon, engineDevice: probe.engineDevice, name: `${gpu?.name ?? 'device'} (${probe.engineDevice})` } });
    writeCachedSelfCheck(key, report);
  }
  if (report.ok) return { ...chosen, selfCheck: report };
  const why = `the self-check of ${report.device} against the CPU failed: ${describeSelfCheck(report)}`;
  if (device === 'auto') return fallBack(why);
  throw new SelfCheckError(`device 'cuda' is not used: ${why}`, report.differences);
}
