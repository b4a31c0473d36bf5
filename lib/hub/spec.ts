/**
 * Model references that name a Hugging Face repository instead of a local path:
 *
 *   hf:owner/name                      the repository's checkpoint (config, tokenizer, safetensors)
 *   hf:owner/name@revision             at a branch, tag or commit (default: main)
 *   hf:owner/name/file.gguf            one file of the repository (a GGUF file, typically)
 *   hf:owner/name@revision/dir/file.gguf
 *
 * `nemotron-node pull` takes the same without the `hf:` prefix.
 */
import { InvalidArgumentError } from '../errors.js';

export interface HubSpec {
  /** `owner/name` */
  repo: string;
  /** branch, tag or commit; undefined when not given */
  revision?: string;
  /** one file of the repository, when given */
  file?: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** True for strings that name a Hugging Face repository (`hf:…`). */
export function isHubSpec(s: string): boolean {
  return s.startsWith('hf:');
}

/** A repository path inside the repo: relative, `/`-separated, no `.`/`..` segments. */
export function assertRepoPath(file: string, what = 'file'): string {
  const segs = file.split('/');
  if (!file || file.startsWith('/') || file.includes('\\') || file.includes('\0') || segs.some((s) => s === '' || s === '.' || s === '..')) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `${what} ${JSON.stringify(file)} is not a relative path inside a repository`);
  }
  return file;
}

/** Parses `hf:owner/name[@revision][/path/to/file]` (the `hf:` prefix optional). */
export function parseHubSpec(spec: string): HubSpec {
  const s = spec.startsWith('hf:') ? spec.slice(3) : spec;
  const bad = (why: string) =>
    new InvalidArgumentError('ERR_INVALID_ARGUMENT', `${JSON.stringify(spec)} is not a Hugging Face model reference (${why}): expected hf:owner/name, hf:owner/name@revision or hf:owner/name/file.gguf`);
  const parts = s.split('/');
  if (parts.length < 2) throw bad('no owner/name');
  const owner = parts[0]!;
  let name = parts[1]!;
  let revision: string | undefined;
  const at = name.indexOf('@');
  if (at >= 0) {
    revision = name.slice(at + 1);
    name = name.slice(0, at);
    if (!revision) throw bad('an empty revision after @');
  }
  if (!NAME.test(owner) || !NAME.test(name) || owner.includes('..') || name.includes('..') || name.endsWith('.git')) throw bad(`"${owner}/${name}" is not a repository name`);
  const rest = parts.slice(2).join('/');
  const file = rest ? assertRepoPath(rest) : undefined;
  return { repo: `${owner}/${name}`, ...(revision === undefined ? {} : { revision }), ...(file === undefined ? {} : { file }) };
}
