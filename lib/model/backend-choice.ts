/**
 * Which backend runs a model: LoadOptions.device, narrowed by what the checkpoint needs. Mixture-of-
 * experts blocks ('E') and FP8 weights have CPU kernels only (csrc/engine/forward.cc moe_block,
 * csrc/model/weights.cc): 'auto' keeps such a model on the CPU, 'cuda' is refused before anything is
 * loaded. The rest is lib/device.ts (CUDA probe, self-check, fallback).
 */
import { UnsupportedModelError } from '../errors.js';
import { chooseDevice, type ChosenDevice } from '../device.js';
import { hasFp8Weights, hasMoeBlocks } from './load-plan.js';

export async function chooseBackend(rawConfig: Record<string, unknown> | null, device: 'cpu' | 'cuda' | 'auto', selfCheck: 'run' | 'cached' | 'off'): Promise<ChosenDevice> {
  const hasMoe = hasMoeBlocks(rawConfig);
  const hasFp8 = hasFp8Weights(rawConfig);
  if ((hasMoe || hasFp8) && device === 'cuda') {
    const what = hasMoe ? "mixture-of-experts blocks ('E')" : 'FP8 weights';
    throw new UnsupportedModelError(`this model has ${what}, which run on the CPU only for now: load it with device 'cpu' or 'auto'`);
  }
  return chooseDevice(hasMoe || hasFp8 ? 'cpu' : device, { selfCheck });
}
