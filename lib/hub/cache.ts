/**
 * Where Hugging Face files live on this machine, and the settings every Hugging Face tool reads, resolved
 * the way huggingface_hub (Python) and @huggingface/hub resolve them, so a download by one is found by
 * the others:
 *
 *   HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub
 *   HF_ENDPOINT (default https://huggingface.co)
 *   HF_TOKEN (also the older HUGGING_FACE_HUB_TOKEN), else the file `hf auth login` writes: HF_TOKEN_PATH,
 *     else $HF_HOME/token
 *   HF_HUB_OFFLINE=1: use the cache only
 *
 * The cache layout (one folder per repository):
 *
 *   models--{owner}--{name}/
 *     blobs/{etag}                      file contents, named by the LFS sha256 or the git blob id
 *     blobs/{etag}.incomplete           a download in progress (resumed from its length)
 *     refs/{revision}                   the commit a branch or tag pointed at when last resolved
 *     snapshots/{commit}/{path}         a relative symlink to ../../blobs/{etag} (a copy where links fail)
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

function hfHome(): string {
  return process.env.HF_HOME || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface');
}

/** The hub cache folder (the `hub` folder, which holds one `models--owner--name` folder per repository). */
export function hubCacheDir(): string {
  return process.env.HF_HUB_CACHE || process.env.HUGGINGFACE_HUB_CACHE || path.join(hfHome(), 'hub');
}

/** The hub's base URL, without a trailing slash. */
export function hubEndpoint(): string {
  return (process.env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

/** The access token from the environment or the login file, or undefined. */
export function hubToken(): string | undefined {
  const env = process.env.HF_TOKEN || process.env.HUGGING_FACE_HUB_TOKEN;
  if (env) return env.trim();
  const file = process.env.HF_TOKEN_PATH || path.join(hfHome(), 'token');
  try {
    const t = readFileSync(file, 'utf8').trim();
    return t || undefined;
  } catch {
    return undefined;
  }
}

/** HF_HUB_OFFLINE as huggingface_hub reads it. */
export function hubOffline(): boolean {
  const v = (process.env.HF_HUB_OFFLINE ?? '').toLowerCase();
  return v === '1' || v === 'true' || v === 'yes' || v === 'on';
}

/** `owner/name` -> `models--owner--name`. */
export function repoFolderName(repo: string): string {
  return `models--${repo.split('/').join('--')}`;
}
