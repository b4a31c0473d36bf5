/**
 * The built-in demo model: a tiny checkpoint with random weights, made once and cached, so the CLI and
 * examples run without downloading anything. Its output is meaningless text by design.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { makeTinyModel } from './tiny-model/index.js';

/** Bump when the maker's output changes, so stale caches are not reused. */
const DEFAULT_MODEL_VERSION = 'tiny-default-v1';

export function cacheDir(): string {
  return process.env.NEMOTRON_NODE_CACHE ?? path.join(os.homedir(), '.cache', 'nemotron-node');
}

/** Path of the default tiny model, creating it on first use. */
export async function defaultModelPath(): Promise<string> {
  const dir = path.join(cacheDir(), DEFAULT_MODEL_VERSION);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  mkdirSync(cacheDir(), { recursive: true });
  // Build in a private folder and rename it into place: a concurrent or interrupted run never leaves a
  // half-written model where a later run would find it.
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    await makeTinyModel(tmp, { seed: 1, pattern: 'M-M*-M-M*-', hiddenSize: 128, dtype: 'bf16' });
    if (!existsSync(dir)) renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}
