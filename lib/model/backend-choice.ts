/**
 * Which backend runs a model: LoadOptions.device, narrowed by what the checkpoint needs. Mixture-of-
 * experts blocks ('E') have CPU kernels only (csrc/engine/forward.cc moe_block): 'auto' keeps such a
 * model on the CPU, 'cuda' is refused before anything is loaded. FP8 weights run on both (the CUDA
 * backend keeps the E4M3 bytes on the device and applies the scales). The rest is lib/device.ts (CUDA
 * probe, self-check, fallback).
 */
import { UnsupportedModelError } from '../errors.js';
import { chooseDevice, type ChosenDevice } from '../device.js';
import { hasMoeBlocks } from './load-plan.js';

export async function chooseBackend(rawConfig: Record<string, unknown> | null, device: 'cpu' | 'cuda' | 'auto', selfCheck: 'run' | 'cached' | 'off'): Promise<ChosenDevice> {
  const hasMoe = hasMoeBlocks(rawConfig);
  if (hasMoe && device === 'cuda') {
    throw new UnsupportedModelError("this model has mixture-of-experts blocks ('E'), which run on the CPU only for now: load it with device 'cpu' or 'auto'");
  }
  return chooseDevice(hasMoe ? 'cpu' : device, { selfCheck });
}
