/**
 * A small Hugging Face hub client on Node's fetch: lists a repository at a revision, downloads the files a
 * checkpoint needs into the shared hub cache (cache.ts), resumes interrupted downloads from the bytes
 * already on disk (HTTP Range), checks every file's size and every LFS file's sha256, and reports progress
 * in bytes. It speaks the same protocol as huggingface_hub's hf_hub_download / snapshot_download:
 *
 *   GET  {endpoint}/api/models/{repo}/revision/{revision}?blobs=true  -> { sha, siblings: [{ rfilename, size, lfs }] }
 *   HEAD {endpoint}/{repo}/resolve/{commit}/{path}  -> X-Repo-Commit, X-Linked-Etag (LFS sha256) or ETag (git
 *        blob id), X-Linked-Size or Content-Length, and for LFS files a 302 to the file host (not followed)
 *   GET  the file (following redirects; Range: bytes=N- to resume)
 *
 * The access token goes to the hub's own origin only, never to the host a redirect leads to (the LFS/CDN
 * URL is pre-signed). Why not @huggingface/hub: see README ("Getting a model").
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, open, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { DownloadError, InvalidArgumentError, ModelLoadError, NemotronError } from '../errors.js';
import { hubCacheDir, hubEndpoint, hubOffline, hubToken, repoFolderName } from './cache.js';
import { assertRepoPath, parseHubSpec } from './spec.js';
import { byteChunks } from '../byte-stream.js';

export interface HubOptions {
  /** Branch, tag or commit; default: the reference's `@revision`, else 'main'. */
  revision?: string;
  /** Download this one file of the repository (e.g. a .gguf) instead of the checkpoint. */
  file?: string;
  /** The hub cache folder; default HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** The hub's URL; default HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Access token for gated or private repositories; default HF_TOKEN, else the `hf auth login` token file. `false`: none. */
  token?: string | false;
  /** Use the cache only, never the network; default HF_HUB_OFFLINE. */
  offline?: boolean;
  /** Attempts per file after a dropped connection or a 5xx/429 answer, each resuming where the last stopped. Default 5. */
  retries?: number;
  /** Stops the download (the partial file stays and is resumed next time). */
  signal?: AbortSignal;
}

export interface DownloadProgress {
  phase: 'download';
  /** bytes / totalBytes (1 when there is nothing to fetch) */
  fraction: number;
  /** bytes on disk of the files being fetched (resumed bytes included) */
  bytes: number;
  /** bytes of the files being fetched (those already in the cache are not counted) */
  totalBytes: number;
  /** bytes received over the network in this call (what a speed should be computed from) */
  receivedBytes: number;
  /** the file being fetched now */
  file: string;
  /** files fetched so far, and files to fetch */
  filesDone: number;
  filesTotal: number;
}

export interface PulledFile {
  /** path inside the repository */
  path: string;
  size: number;
  /** blob name in the cache: the LFS sha256, or the git blob id */
  etag: string;
  /** 'cache': already there; 'download': fetched (or finished) now */
  source: 'cache' | 'download';
}

export interface PullResult {
  repo: string;
  revision: string;
  commit: string;
  /** what to load: the snapshot folder, or the one file asked for (a .gguf) */
  path: string;
  /** the snapshot folder, `{cache}/models--owner--name/snapshots/{commit}` */
  snapshot: string;
  files: PulledFile[];
  /** bytes received over the network */
  downloadedBytes: number;
}

export type PullOptions = HubOptions & { onProgress?: (p: DownloadProgress) => void };

/** Files of a safetensors checkpoint folder that loading (and chatting) reads. */
function checkpointFile(name: string): boolean {
  const base = name.split('/').pop()!;
  return base.endsWith('.safetensors') || base.endsWith('.json') || base.endsWith('.jinja') || base === 'tokenizer.model';
}

interface Ctx {
  repo: string;
  endpoint: string;
  origin: string;
  token: string | undefined;
  storage: string;
  retries: number;
  signal: AbortSignal | undefined;
}

interface FileMeta {
  path: string;
  commit: string | undefined;
  etag: string;
  size: number;
  /** the LFS sha256, when the file is stored with LFS */
  sha256: string | undefined;
  /** where to GET it (the redirect target of an LFS file, else the resolve URL) */
  url: string;
  /** the revision the metadata was resolved at (to resolve a fresh URL: the file host's are signed and expire) */
  revision: string;
}

const SHA256 = /^[0-9a-f]{64}$/;
const COMMIT = /^[0-9a-f]{40}$/;

function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}

function normalizeEtag(e: string | null): string | undefined {
  if (!e) return undefined;
  return e.replace(/^W\//, '').replace(/^"|"$/g, '') || undefined;
}

/** A network failure (not an HTTP answer): refused, reset, DNS, TLS. */
function networkError(err: unknown): boolean {
  return err instanceof TypeError || (err instanceof Error && /ECONN|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE|socket|terminated|other side closed/i.test(`${err.message} ${String((err as { cause?: unknown }).cause ?? '')}`));
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The download was aborted', 'AbortError');
}

async function httpError(ctx: Ctx, res: Response, what: string): Promise<NemotronError> {
  let detail = '';
  try {
    const text = (await res.text()).slice(0, 300);
    try {
      const j = JSON.parse(text) as { error?: string };
      detail = j.error ?? text;
    } catch {
      detail = text;
    }
  } catch {
    // no body
  }
  const msg = `${what}: HTTP ${res.status}${detail ? ` (${detail.trim()})` : ''}`;
  if (res.status === 401 || res.status === 403) {
    const hint = ctx.token ? 'the token was refused or has no access to this repository (accept its licence on the hub if it is gated)' : 'set HF_TOKEN to an access token (https://huggingface.co/settings/tokens)';
    return new DownloadError('ERR_DOWNLOAD_UNAUTHORIZED', `${msg}: ${hint}`, { status: res.status });
  }
  if (res.status === 404) return new ModelLoadError('ERR_MODEL_NOT_FOUND', `${msg}: no such repository, revision or file on ${ctx.endpoint}`);
  return new DownloadError('ERR_DOWNLOAD', msg, { status: res.status });
}

/**
 * fetch with redirects handled here: the token only on the hub's origin, relative redirects (renamed
 * repositories) always followed, others (to the file host) only when `followAll`.
 */
async function request(ctx: Ctx, url: string, init: { method: 'GET' | 'HEAD'; headers?: Record<string, string> }, followAll: boolean): Promise<Response> {
  let current = url;
  for (let hop = 0; hop < 10; hop++) {
    const u = new URL(current);
    const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'nemotron-node', ...init.headers };
    if (ctx.token && u.origin === ctx.origin) headers.authorization = `Bearer ${ctx.token}`;
    const res = await fetch(current, { method: init.method, headers, redirect: 'manual', ...(ctx.signal ? { signal: ctx.signal } : {}) });
    const loc = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && loc) {
      const next = new URL(loc, current);
      if (!followAll && next.origin !== u.origin) return res;
      await res.body?.cancel().catch(() => {});
      current = next.href;
      continue;
    }
    return res;
  }
  throw new DownloadError('ERR_DOWNLOAD', `too many redirects from ${url}`);
}

/** The commit and the file list of the repository at a revision. */
async function repoInfo(ctx: Ctx, revision: string): Promise<{ commit: string; files: Array<{ path: string; size?: number; sha256?: string }> }> {
  const url = `${ctx.endpoint}/api/models/${ctx.repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  const res = await request(ctx, url, { method: 'GET', headers: { accept: 'application/json' } }, true);
  if (!res.ok) throw await httpError(ctx, res, `listing ${ctx.repo}@${revision}`);
  const j = (await res.json()) as { sha?: unknown; siblings?: Array<{ rfilename?: unknown; size?: unknown; lfs?: { sha256?: unknown } }> };
  if (typeof j.sha !== 'string' || !COMMIT.test(j.sha) || !Array.isArray(j.siblings)) {
    throw new DownloadError('ERR_DOWNLOAD', `listing ${ctx.repo}@${revision}: the hub's answer has no commit sha or file list`);
  }
  const files = j.siblings
    .filter((s) => typeof s.rfilename === 'string')
    .map((s) => ({
      path: s.rfilename as string,
      ...(typeof s.size === 'number' ? { size: s.size } : {}),
      ...(typeof s.lfs?.sha256 === 'string' ? { sha256: s.lfs.sha256 } : {}),
    }));
  return { commit: j.sha, files };
}

/** HEAD of a file: its commit, etag (blob name), size, LFS sha256 and the URL to GET. */
async function fileMeta(ctx: Ctx, revision: string, file: string): Promise<FileMeta> {
  const resolve = `${ctx.endpoint}/${ctx.repo}/resolve/${encodeURIComponent(revision)}/${encodePath(file)}`;
  const res = await request(ctx, resolve, { method: 'HEAD' }, false);
  await res.body?.cancel().catch(() => {});
  const redirected = res.status >= 300 && res.status < 400;
  if (!res.ok && !redirected) throw await httpError(ctx, res, `${ctx.repo}/${file}@${revision}`);
  const h = res.headers;
  const linkedEtag = normalizeEtag(h.get('x-linked-etag'));
  const etag = linkedEtag ?? normalizeEtag(h.get('etag'));
  const sizeText = h.get('x-linked-size') ?? h.get('content-length');
  const size = sizeText === null ? NaN : Number(sizeText);
  const commit = h.get('x-repo-commit') ?? undefined;
  if (!etag || !/^[A-Za-z0-9._-]+$/.test(etag)) throw new DownloadError('ERR_DOWNLOAD', `${ctx.repo}/${file}: the hub sent no usable ETag / X-Linked-Etag header`);
  if (!Number.isSafeInteger(size) || size < 0) throw new DownloadError('ERR_DOWNLOAD', `${ctx.repo}/${file}: the hub sent no file size (X-Linked-Size / Content-Length)`);
  const location = h.get('location');
  return {
    path: file,
    commit,
    etag,
    size,
    sha256: linkedEtag && SHA256.test(linkedEtag) ? linkedEtag : undefined,
    url: redirected && location ? new URL(location, resolve).href : resolve,
    revision,
  };
}

async function sizeOf(p: string): Promise<number | undefined> {
  try {
    return (await stat(p)).size;
  } catch {
    return undefined;
  }
}

/** snapshots/{commit}/{file} -> ../../blobs/{etag} (relative, as huggingface_hub writes it); a copy where links fail. */
async function linkIntoSnapshot(blob: string, pointer: string): Promise<void> {
  await mkdir(path.dirname(pointer), { recursive: true });
  const target = path.relative(path.dirname(pointer), blob);
  try {
    if ((await readlink(pointer)) === target) return;
  } catch {
    // absent, or a regular file
  }
  await rm(pointer, { force: true });
  try {
    await symlink(target, pointer);
  } catch {
    await copyFile(blob, pointer);
  }
}

/** Feeds bytes [0, n) of a file into a fresh hash (the part of a resumed download already on disk). */
async function hashPrefix(file: string, n: number): Promise<Hash> {
  const h = createHash('sha256');
  if (n === 0) return h;
  for await (const chunk of createReadStream(file, { start: 0, end: n - 1 })) h.update(chunk as Buffer);
  return h;
}

/** An exception thrown by the caller's onProgress: passed through as is, never retried. */
class CallbackFailure extends Error {
  constructor(readonly original: unknown) {
    super('onProgress threw');
  }
}

interface Tally {
  bytes: number;
  totalBytes: number;
  receivedBytes: number;
  filesDone: number;
  filesTotal: number;
  emit: (file: string, force?: boolean) => void;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One writer per blob across processes: `blobs/{etag}.lock` holds the writer's pid (created exclusively).
 * Another pull of the same file waits for it; a lock whose process is gone is taken over. Returns the
 * release function.
 */
async function lockBlob(ctx: Ctx, blob: string, file: string): Promise<() => Promise<void>> {
  const lock = `${blob}.lock`;
  for (let waited = 0; ; waited++) {
    if (ctx.signal?.aborted) throw abortError(ctx.signal);
    try {
      const fh = await open(lock, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => rm(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = NaN;
    try {
      owner = Number(readFileSync(lock, 'utf8'));
    } catch {
      continue; // released meanwhile
    }
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && !pidAlive(owner)) {
      await rm(lock, { force: true }); // its process is gone
      continue;
    }
    if (waited > 0 && waited % 120 === 0) process.emitWarning(`nemotron-node: waiting for another download of ${ctx.repo}/${file} (${lock}, pid ${owner})`);
    await sleep(250, undefined, ctx.signal ? { signal: ctx.signal } : undefined).catch(() => {});
  }
}

/** Downloads one file into blobs/{etag}: resumes `.incomplete`, retries, checks size and sha256. */
async function downloadBlob(ctx: Ctx, meta: FileMeta, blob: string, tally: Tally): Promise<void> {
  const partial = `${blob}.incomplete`;
  await mkdir(path.dirname(blob), { recursive: true });
  let have = (await sizeOf(partial)) ?? 0;
  if (have > meta.size) {
    await rm(partial, { force: true });
    have = 0;
  }
  tally.bytes += have;
  tally.emit(meta.path, true);
  let hash: Hash | undefined = meta.sha256 ? await hashPrefix(partial, have) : undefined;
  let failures = 0;
  let refresh = false;
  let refreshedAfterDenial = false;
  for (;;) {
    if (ctx.signal?.aborted) throw abortError(ctx.signal);
    if (have === meta.size) break;
    let res: Response | undefined;
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    try {
      if (refresh) {
        // After a failure, ask the hub again: the file host's URL is signed and may have expired.
        const fresh = await fileMeta(ctx, meta.revision, meta.path);
        if (fresh.etag !== meta.etag || fresh.size !== meta.size) throw new DownloadError('ERR_DOWNLOAD', `${ctx.repo}/${meta.path} changed on the hub during the download (etag ${meta.etag} -> ${fresh.etag}); pull again`);
        meta.url = fresh.url;
        refresh = false;
      }
      res = await request(ctx, meta.url, { method: 'GET', headers: have > 0 ? { range: `bytes=${have}-` } : {} }, true);
      if (res.status === 416 && have > 0) {
        // The server cannot serve from there: start over.
        await res.body?.cancel().catch(() => {});
        tally.bytes -= have;
        have = 0;
        hash = meta.sha256 ? createHash('sha256') : undefined;
        await rm(partial, { force: true });
        continue;
      }
      if (!res.ok) {
        const err = await httpError(ctx, res, `downloading ${ctx.repo}/${meta.path}`);
        if (res.status >= 500 || res.status === 429 || res.status === 408) throw Object.assign(err, { retry: true });
        // The file host (not the hub) refusing a signed URL: it may have expired; resolve once more.
        if ((res.status === 401 || res.status === 403) && new URL(res.url || meta.url).origin !== ctx.origin && !refreshedAfterDenial) {
          refreshedAfterDenial = true;
          refresh = true;
          continue;
        }
        throw err;
      }
      if (have > 0 && res.status === 206) {
        const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
        if (!range || Number(range[1]) !== have) throw new DownloadError('ERR_DOWNLOAD', `downloading ${ctx.repo}/${meta.path}: asked for bytes from ${have}, got Content-Range "${res.headers.get('content-range')}"`);
      } else if (have > 0) {
        // 200: the whole file (the server ignored Range): start over.
        tally.bytes -= have;
        have = 0;
        hash = meta.sha256 ? createHash('sha256') : undefined;
      }
      if (!res.body) throw new DownloadError('ERR_DOWNLOAD', `downloading ${ctx.repo}/${meta.path}: empty answer`);
      fh = await open(partial, have === 0 ? 'w' : 'r+');
      for await (const chunk of byteChunks(res.body)) {
        if (have + chunk.byteLength > meta.size) throw new DownloadError('ERR_CHECKSUM_MISMATCH', `${ctx.repo}/${meta.path}: the server sent more than the ${meta.size} bytes the hub announced`);
        await fh.write(chunk, 0, chunk.byteLength, have);
        hash?.update(chunk);
        have += chunk.byteLength;
        tally.bytes += chunk.byteLength;
        tally.receivedBytes += chunk.byteLength;
        failures = 0;
        tally.emit(meta.path);
      }
      await fh.close();
      fh = undefined;
      if (have !== meta.size) throw Object.assign(new DownloadError('ERR_DOWNLOAD', `downloading ${ctx.repo}/${meta.path}: the connection ended at byte ${have} of ${meta.size}`), { retry: true });
    } catch (err) {
      await fh?.close().catch(() => {});
      if (err instanceof CallbackFailure) throw err;
      if (ctx.signal?.aborted) throw abortError(ctx.signal);
      const retry = (err as { retry?: boolean }).retry === true || (!(err instanceof NemotronError) && networkError(err));
      if (!retry) throw err;
      refresh = true;
      if (++failures > ctx.retries) {
        if (err instanceof NemotronError) throw err;
        throw new DownloadError('ERR_DOWNLOAD', `downloading ${ctx.repo}/${meta.path}: ${(err as Error).message} (after ${ctx.retries} retries; ${have} of ${meta.size} bytes are kept and resumed next time)`, { cause: err });
      }
      await sleep(Math.min(200 * 2 ** (failures - 1), 5000), undefined, ctx.signal ? { signal: ctx.signal } : undefined).catch(() => {});
    }
  }
  if (meta.size === 0) await writeFile(partial, '');
  const onDisk = await sizeOf(partial);
  if (onDisk !== meta.size) throw new DownloadError('ERR_CHECKSUM_MISMATCH', `${ctx.repo}/${meta.path}: ${onDisk} bytes on disk, the hub announced ${meta.size}`);
  if (hash && meta.sha256) {
    const got = hash.digest('hex');
    if (got !== meta.sha256) {
      await rm(partial, { force: true });
      throw new DownloadError('ERR_CHECKSUM_MISMATCH', `${ctx.repo}/${meta.path}: sha256 ${got} does not match the LFS sha256 ${meta.sha256} the hub announced (the partial file was removed; try again)`);
    }
  }
  await rename(partial, blob);
}

function makeCtx(repo: string, options: HubOptions): Ctx {
  const endpoint = (options.endpoint ?? hubEndpoint()).replace(/\/+$/, '');
  let origin: string;
  try {
    origin = new URL(endpoint).origin;
  } catch {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `the hub endpoint ${JSON.stringify(endpoint)} is not a URL`);
  }
  const retries = options.retries ?? 5;
  if (!Number.isInteger(retries) || retries < 0) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `options.retries must be a non-negative integer, got ${String(retries)}`);
  return {
    repo,
    endpoint,
    origin,
    token: options.token === false ? undefined : (options.token ?? hubToken()),
    storage: path.join(path.resolve(options.cacheDir ?? hubCacheDir()), repoFolderName(repo)),
    retries,
    signal: options.signal,
  };
}

/** The commit a revision points at in the cache (refs/{revision}, or the commit itself), if its snapshot is there. */
function cachedCommit(storage: string, revision: string): string | undefined {
  let commit = revision;
  if (!COMMIT.test(revision)) {
    try {
      commit = readFileSync(path.join(storage, 'refs', revision), 'utf8').trim();
    } catch {
      return undefined;
    }
  }
  return COMMIT.test(commit) && existsSync(path.join(storage, 'snapshots', commit)) ? commit : undefined;
}

/** What an offline (or unreachable-hub) pull can use from the cache, or undefined. */
function fromCache(ctx: Ctx, revision: string, file: string | undefined): PullResult | undefined {
  const commit = cachedCommit(ctx.storage, revision);
  if (!commit) return undefined;
  const snapshot = path.join(ctx.storage, 'snapshots', commit);
  const target = file ? path.join(snapshot, file) : snapshot;
  if (!existsSync(file ? target : path.join(snapshot, 'config.json'))) return undefined;
  return { repo: ctx.repo, revision, commit, path: target, snapshot, files: [], downloadedBytes: 0 };
}

/**
 * Downloads a Hugging Face repository's checkpoint (or one file of it) into the hub cache and returns
 * where it is. Accepts `owner/name`, `owner/name@revision`, `owner/name/file.gguf`, with or without `hf:`.
 *
 * Without a file: the safetensors checkpoint (`*.safetensors`, `*.json`, `*.jinja`, `tokenizer.model`);
 * a repository with no safetensors but GGUF files needs one GGUF chosen, unless it has exactly one.
 * Files already in the cache (by any tool that uses the hub cache) are not fetched again; a partial file
 * (`blobs/*.incomplete`) is resumed. Offline (HF_HUB_OFFLINE=1) or when the hub cannot be reached, the
 * cached snapshot of the revision is used if there is one.
 */
export async function pullModel(reference: string, options: PullOptions = {}): Promise<PullResult> {
  const spec = parseHubSpec(reference);
  if (options.file !== undefined && spec.file !== undefined && options.file !== spec.file) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `two files given: ${JSON.stringify(spec.file)} in the reference and ${JSON.stringify(options.file)} in options.file`);
  }
  const file = options.file !== undefined ? assertRepoPath(options.file) : spec.file;
  if (spec.revision !== undefined && options.revision !== undefined && spec.revision !== options.revision) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `two revisions given: ${JSON.stringify(spec.revision)} in the reference and ${JSON.stringify(options.revision)} in options.revision`);
  }
  const revision = spec.revision ?? options.revision ?? 'main';
  const ctx = makeCtx(spec.repo, options);
  const offline = options.offline ?? hubOffline();
  if (offline) {
    const cached = fromCache(ctx, revision, file);
    if (cached) return cached;
    throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `offline (HF_HUB_OFFLINE) and ${spec.repo}${file ? `/${file}` : ''}@${revision} is not in the hub cache at ${path.dirname(ctx.storage)}`);
  }
  // A commit already complete in the cache needs no network at all.
  if (COMMIT.test(revision)) {
    const cached = fromCache(ctx, revision, file);
    if (cached && file) return cached;
  }
  try {
    return await pullOnline(ctx, revision, file, options.onProgress);
  } catch (err) {
    if (err instanceof CallbackFailure) throw err.original;
    if (!(err instanceof NemotronError) && networkError(err) && !ctx.signal?.aborted) {
      const cached = fromCache(ctx, revision, file);
      if (cached) return cached;
      throw new DownloadError('ERR_DOWNLOAD', `cannot reach ${ctx.endpoint} (${(err as Error).message}${(err as { cause?: Error }).cause ? `: ${(err as { cause?: Error }).cause!.message}` : ''}) and ${spec.repo}@${revision} is not in the hub cache`, { cause: err });
    }
    throw err;
  }
}

async function pullOnline(ctx: Ctx, revision: string, file: string | undefined, onProgress: PullOptions['onProgress']): Promise<PullResult> {
  let commit: string;
  let wanted: string[];
  let resultFile = file;
  if (file) {
    const meta = await fileMeta(ctx, revision, file);
    if (!meta.commit || !COMMIT.test(meta.commit)) throw new DownloadError('ERR_DOWNLOAD', `${ctx.repo}/${file}: the hub sent no X-Repo-Commit header`);
    commit = meta.commit;
    wanted = [file];
  } else {
    const info = await repoInfo(ctx, revision);
    commit = info.commit;
    const names = info.files.map((f) => f.path);
    const safetensors = names.filter((n) => n.endsWith('.safetensors'));
    const ggufs = names.filter((n) => n.endsWith('.gguf'));
    if (safetensors.length > 0) wanted = names.filter(checkpointFile);
    else if (ggufs.length === 1) {
      wanted = ggufs;
      resultFile = ggufs[0];
    } else if (ggufs.length > 1) {
      throw new InvalidArgumentError(
        'ERR_INVALID_ARGUMENT',
        `${ctx.repo} holds ${ggufs.length} GGUF files and no safetensors: choose one, as hf:${ctx.repo}/FILE (or --file FILE): ${ggufs.join(', ')}`,
      );
    } else throw new ModelLoadError('ERR_INVALID_CHECKPOINT', `${ctx.repo}@${revision} has no .safetensors or .gguf files (files: ${names.slice(0, 20).join(', ')}${names.length > 20 ? ', …' : ''})`);
  }
  const snapshot = path.join(ctx.storage, 'snapshots', commit);
  if (revision !== commit) {
    const ref = path.join(ctx.storage, 'refs', revision);
    await mkdir(path.dirname(ref), { recursive: true });
    await writeFile(ref, commit);
  }
  // Metadata of every file first (so the total is known), then the downloads, one file at a time.
  const metas: FileMeta[] = [];
  for (const name of wanted) {
    assertRepoPath(name);
    metas.push(await fileMeta(ctx, commit, name));
  }
  const files: PulledFile[] = [];
  const todo: FileMeta[] = [];
  for (const m of metas) {
    const blob = path.join(ctx.storage, 'blobs', m.etag);
    if ((await sizeOf(blob)) === m.size) {
      await linkIntoSnapshot(blob, path.join(snapshot, m.path));
      files.push({ path: m.path, size: m.size, etag: m.etag, source: 'cache' });
    } else todo.push(m);
  }
  let last = 0;
  const tally: Tally = {
    bytes: 0,
    totalBytes: todo.reduce((s, m) => s + m.size, 0),
    receivedBytes: 0,
    filesDone: 0,
    filesTotal: todo.length,
    emit(name, force = false) {
      if (!onProgress) return;
      const now = Date.now();
      if (!force && now - last < 100) return;
      last = now;
      const p: DownloadProgress = {
        phase: 'download',
        fraction: tally.totalBytes > 0 ? Math.min(1, tally.bytes / tally.totalBytes) : 1,
        bytes: tally.bytes,
        totalBytes: tally.totalBytes,
        receivedBytes: tally.receivedBytes,
        file: name,
        filesDone: tally.filesDone,
        filesTotal: tally.filesTotal,
      };
      try {
        onProgress(p);
      } catch (err) {
        throw new CallbackFailure(err);
      }
    },
  };
  for (const m of todo) {
    const blob = path.join(ctx.storage, 'blobs', m.etag);
    await mkdir(path.dirname(blob), { recursive: true });
    const release = await lockBlob(ctx, blob, m.path);
    try {
      // Another process (or pull) may have finished it while this one waited for the lock.
      if ((await sizeOf(blob)) !== m.size) await downloadBlob(ctx, m, blob, tally);
      else tally.bytes += m.size;
    } finally {
      await release();
    }
    await linkIntoSnapshot(blob, path.join(snapshot, m.path));
    tally.filesDone++;
    tally.emit(m.path, true);
    files.push({ path: m.path, size: m.size, etag: m.etag, source: 'download' });
  }
  if (todo.length === 0) tally.emit(wanted.at(-1) ?? '', true); // nothing to fetch: one report, fraction 1
  return {
    repo: ctx.repo,
    revision,
    commit,
    path: resultFile ? path.join(snapshot, resultFile) : snapshot,
    snapshot,
    files,
    downloadedBytes: tally.receivedBytes,
  };
}
