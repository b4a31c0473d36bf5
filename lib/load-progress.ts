/**
 * What `loadModel(…, { onProgress })` reports, phase by phase. What can be measured is measured; what
 * cannot is reported only as begun (fraction 0) and done (fraction 1):
 *
 *   'download'   only for `hf:` references with files to fetch: bytes of the files fetched so far over their
 *                total (resumed bytes count as done), file by file; fractions in between are real.
 *   'plan'       reading config.json (or the GGUF header), sizing the weights and the memory plan: 0, then 1
 *                (with `weightBytes`). Milliseconds.
 *   'tokenizer'  reading tokenizer.json and the chat template: 0, then 1.
 *   'load'       the native loader: memory-maps every weight file, checks every tensor against the config,
 *                allocates the state and builds the engine. It reports no progress from inside, so only 0 and
 *                1 are sent; the weights themselves are read from disk lazily, on first use.
 */
import { isHubSpec, pullModel, type DownloadProgress, type HubOptions } from './hub/index.js';
import { InvalidArgumentError } from './errors.js';

export type { DownloadProgress } from './hub/index.js';

const HUB_KEYS = ['revision', 'file', 'cacheDir', 'endpoint', 'token', 'offline', 'retries', 'signal'];

export interface PhaseProgress {
  phase: 'plan' | 'tokenizer' | 'load';
  /** 0 when the phase begins, 1 when it is done: these phases report no fractions in between */
  fraction: 0 | 1;
  /** the local checkpoint folder or .gguf file being loaded */
  path: string;
  /** bytes of the weight files, on the 'plan' event with fraction 1 */
  weightBytes?: number;
}

export type LoadProgress = DownloadProgress | PhaseProgress;

export type LoadProgressCallback = (progress: LoadProgress) => void;

/** The callback of options.onProgress, checked; a no-op when none was given. */
export function progressCallback(onProgress: unknown): LoadProgressCallback {
  if (onProgress === undefined) return () => {};
  if (typeof onProgress !== 'function') {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `options.onProgress must be a function, got ${typeof onProgress}`);
  }
  return onProgress as LoadProgressCallback;
}

/**
 * The local path to load: the path itself, or for `hf:owner/name[@rev][/file.gguf]` the downloaded (or
 * cached) snapshot folder or file.
 */
export async function resolveModelPath(modelPath: string, options: { hub?: HubOptions; onProgress?: LoadProgressCallback } = {}): Promise<string> {
  if (typeof modelPath !== 'string' || !isHubSpec(modelPath)) return modelPath;
  const hub = options.hub ?? {};
  if (typeof hub !== 'object' || hub === null || Array.isArray(hub)) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options.hub must be an object');
  for (const key of Object.keys(hub)) {
    if (!HUB_KEYS.includes(key)) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `options.hub has an unknown option "${key}" (known: ${HUB_KEYS.join(', ')})`);
  }
  const onProgress = progressCallback(options.onProgress);
  const r = await pullModel(modelPath, { ...hub, onProgress });
  return r.path;
}
