// Getting a model from a Hugging Face hub, as a client does it: against a local hub server (test/hub-server.ts)
// that serves a tiny checkpoint the way huggingface.co does (revision API, resolve with 302 to another
// origin for LFS files, Range, ETag / X-Repo-Commit / X-Linked-Etag / X-Linked-Size, a dropped connection).
import { execFile, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DownloadError, loadModel, pullModel, type DownloadProgress, type LoadProgress } from '../../lib/index.js';
import { parseHubSpec } from '../../lib/hub/spec.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir } from '../helpers.js';
import { repoFromDir, sha256, startHubServer, type HubServer } from '../hub-server.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const cli = ['--import', 'tsx', path.join(root, 'lib/cli.ts')];

const REPO = 'nvidia/Tiny-Nemotron';
const GGUF_REPO = 'someone/Tiny-Nemotron-GGUF';
const SHARD = 'model-00001-of-00002.safetensors';

describe('hf: references and pullModel against a local hub', () => {
  const tmp = tempDir('hub');
  let hub: HubServer;
  let source: string;
  let ggufSource: string;

  beforeAll(async () => {
    source = (await makeTinyModel(path.join(tmp.dir, 'src'), { shards: 2, seed: 7, format: 'gguf', pattern: 'M*-' })).dir;
    const f32 = await makeTinyModel(path.join(tmp.dir, 'src-f32'), { seed: 7, format: 'gguf', pattern: 'M*-', dtype: 'f32' });
    ggufSource = path.join(source, 'model.gguf');
    hub = await startHubServer();
    const repo = repoFromDir(source, { 'README.md': '# tiny\n', '.gitattributes': '*.safetensors filter=lfs diff=lfs merge=lfs -text\n' }, 'tiny-commit-1');
    repo.files.delete('model.gguf'); // the safetensors repository
    hub.repos.set(REPO, repo);
    hub.repos.set(GGUF_REPO, {
      files: new Map([
        ['tiny-BF16.gguf', readFileSync(ggufSource)],
        ['tiny-F32.gguf', readFileSync(f32.gguf!)],
        ['README.md', Buffer.from('# gguf\n')],
      ]),
      commit: 'b'.repeat(40),
    });
  });
  afterAll(async () => {
    await hub?.close();
    tmp.cleanup();
  });

  const fresh = (name: string) => {
    const dir = path.join(tmp.dir, name);
    mkdirSync(dir, { recursive: true });
    return dir;
  };

  it('parses hf:owner/name[@revision][/file]', () => {
    expect(parseHubSpec('hf:nvidia/NVIDIA-Nemotron-Nano-9B-v2')).toEqual({ repo: 'nvidia/NVIDIA-Nemotron-Nano-9B-v2' });
    expect(parseHubSpec('hf:o/n@v1.0/sub/m-Q8_0.gguf')).toEqual({ repo: 'o/n', revision: 'v1.0', file: 'sub/m-Q8_0.gguf' });
    expect(parseHubSpec('o/n')).toEqual({ repo: 'o/n' });
    for (const bad of ['hf:nope', 'hf:o/n/../x', 'hf:o/..', 'hf:o/n@', 'hf:/n']) expect(() => parseHubSpec(bad), bad).toThrow(/ERR_INVALID_ARGUMENT|not a/);
  });

  it('pulls a repository into the hub cache layout, resumes a dropped connection, sends the token to the hub only', async () => {
    const cache = fresh('cache-pull');
    hub.token = 'hf_secret';
    hub.log.length = 0;
    const shard = hub.repos.get(REPO)!.files.get(SHARD)!;
    hub.dropAfter.set(SHARD, Math.floor(shard.length / 3));
    hub.rotateOnDrop = true; // and the file host's signed URL expires with it: the client must ask the hub again
    const events: DownloadProgress[] = [];
    const r = await pullModel(REPO, { endpoint: hub.url, cacheDir: cache, token: 'hf_secret', onProgress: (p) => events.push(p) });
    hub.token = undefined;
    const repo = hub.repos.get(REPO)!;
    const storage = path.join(cache, 'models--nvidia--Tiny-Nemotron');
    expect(r.commit).toBe(repo.commit);
    expect(r.path).toBe(path.join(storage, 'snapshots', repo.commit));
    expect(readFileSync(path.join(storage, 'refs', 'main'), 'utf8')).toBe(repo.commit);
    // The checkpoint files, not README.md / .gitattributes.
    expect(r.files.map((f) => f.path).sort()).toEqual([...repo.files.keys()].filter((f) => f !== 'README.md' && f !== '.gitattributes').sort());
    for (const [name, data] of repo.files) {
      const pointer = path.join(r.path, name);
      if (name === 'README.md' || name === '.gitattributes') {
        expect(existsSync(pointer)).toBe(false);
        continue;
      }
      // snapshots/{commit}/{file} -> ../../blobs/{sha256 or git blob id}, as huggingface_hub writes it
      expect(lstatSync(pointer).isSymbolicLink()).toBe(true);
      expect(readlinkSync(pointer)).toMatch(/^\.\.\/\.\.\/blobs\/[0-9a-f]{40,64}$/);
      expect(readFileSync(pointer).equals(data)).toBe(true);
      if (name.endsWith('.safetensors')) expect(path.basename(realpathSync(pointer))).toBe(sha256(data));
    }
    // The dropped connection was resumed with a Range request from where it broke.
    const shardGets = hub.log.filter((q) => q.server === 'cdn' && q.url.includes(sha256(shard)));
    expect(shardGets.length).toBe(2);
    expect(shardGets[0]!.headers.range).toBeUndefined();
    expect(shardGets[1]!.headers.range).toBe(`bytes=${Math.floor(shard.length / 3)}-`);
    expect(shardGets[1]!.url).not.toBe(shardGets[0]!.url); // a freshly signed URL
    hub.rotateOnDrop = false;
    // The token went to the hub, never to the file host (another origin).
    expect(hub.log.filter((q) => q.server === 'hub').every((q) => q.headers.authorization === 'Bearer hf_secret')).toBe(true);
    expect(hub.log.filter((q) => q.server === 'cdn').every((q) => q.headers.authorization === undefined)).toBe(true);
    // Progress in bytes, monotonic, ending at the total.
    const total = r.files.reduce((s, f) => s + f.size, 0);
    expect(events.length).toBeGreaterThan(2);
    expect(events.at(-1)).toMatchObject({ phase: 'download', fraction: 1, bytes: total, totalBytes: total, filesDone: r.files.length, filesTotal: r.files.length });
    for (let i = 1; i < events.length; i++) expect(events[i]!.bytes).toBeGreaterThanOrEqual(events[i - 1]!.bytes);
    expect(r.downloadedBytes).toBe(total); // the bytes before the drop were kept, not fetched again

    // A second pull finds everything in the cache: metadata only, no file bytes.
    hub.log.length = 0;
    const again = await pullModel(`hf:${REPO}`, { endpoint: hub.url, cacheDir: cache });
    expect(again.files.every((f) => f.source === 'cache')).toBe(true);
    expect(again.downloadedBytes).toBe(0);
    expect(hub.log.filter((q) => q.server === 'cdn' || q.method === 'GET' && q.url.includes('/resolve/'))).toEqual([]);
    // Offline, and with the hub gone, the cached snapshot of `main` is used.
    expect((await pullModel(REPO, { cacheDir: cache, offline: true, endpoint: 'http://127.0.0.1:9' })).path).toBe(r.path);
    expect((await pullModel(REPO, { cacheDir: cache, endpoint: 'http://127.0.0.1:9' })).path).toBe(r.path);
  });

  it('resumes a partial file left by an interrupted run and checks its sha256 over the whole file', async () => {
    const cache = fresh('cache-partial');
    const shard = hub.repos.get(REPO)!.files.get(SHARD)!;
    const blobs = path.join(cache, 'models--nvidia--Tiny-Nemotron', 'blobs');
    mkdirSync(blobs, { recursive: true });
    const kept = 100_000;
    writeFileSync(path.join(blobs, `${sha256(shard)}.incomplete`), shard.subarray(0, kept));
    hub.log.length = 0;
    const events: DownloadProgress[] = [];
    const r = await pullModel(`hf:${REPO}/${SHARD}`, { endpoint: hub.url, cacheDir: cache, onProgress: (p) => events.push(p) });
    expect(readFileSync(r.path).equals(shard)).toBe(true);
    expect(existsSync(path.join(blobs, `${sha256(shard)}.incomplete`))).toBe(false);
    const gets = hub.log.filter((q) => q.server === 'cdn');
    expect(gets.map((q) => q.headers.range)).toEqual([`bytes=${kept}-`]);
    expect(r.downloadedBytes).toBe(shard.length - kept);
    expect(events[0]).toMatchObject({ bytes: kept, totalBytes: shard.length });
  });

  it('two pulls of the same repository at once: each file is fetched once (a lock per blob), both get the checkpoint', async () => {
    const cache = fresh('cache-concurrent');
    hub.log.length = 0;
    const [a, b] = await Promise.all([pullModel(REPO, { endpoint: hub.url, cacheDir: cache }), pullModel(REPO, { endpoint: hub.url, cacheDir: cache })]);
    expect(a.path).toBe(b.path);
    for (const [name, data] of hub.repos.get(REPO)!.files) {
      if (!name.endsWith('.safetensors')) continue;
      expect(readFileSync(path.join(a.path, name)).equals(data)).toBe(true);
      expect(hub.log.filter((q) => q.server === 'cdn' && q.url.includes(sha256(data))).length).toBe(1);
    }
    expect(readdirSync(path.join(cache, 'models--nvidia--Tiny-Nemotron', 'blobs')).filter((f) => /\.(lock|incomplete)$/.test(f))).toEqual([]);
  });

  it('an AbortSignal stops a pull; the next pull keeps what was fetched and completes', async () => {
    const cache = fresh('cache-abort');
    const ac = new AbortController();
    const err = await pullModel(REPO, {
      endpoint: hub.url,
      cacheDir: cache,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.filesDone >= 2) ac.abort();
      },
    }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    const r = await pullModel(REPO, { endpoint: hub.url, cacheDir: cache });
    expect(r.files.filter((f) => f.source === 'cache').length).toBeGreaterThanOrEqual(2);
    expect(r.files.some((f) => f.source === 'download')).toBe(true);
    for (const f of r.files) expect(readFileSync(path.join(r.path, f.path)).equals(hub.repos.get(REPO)!.files.get(f.path)!)).toBe(true);
  });

  it('a corrupted LFS file fails its sha256 check (ERR_CHECKSUM_MISMATCH) and is not kept', async () => {
    const cache = fresh('cache-corrupt');
    hub.corrupt.add(SHARD);
    try {
      const err = await pullModel(`${REPO}/${SHARD}`, { endpoint: hub.url, cacheDir: cache }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DownloadError);
      expect(err).toMatchObject({ code: 'ERR_CHECKSUM_MISMATCH' });
      expect((err as Error).message).toMatch(/sha256/);
    } finally {
      hub.corrupt.delete(SHARD);
    }
    const shard = hub.repos.get(REPO)!.files.get(SHARD)!;
    const blob = path.join(cache, 'models--nvidia--Tiny-Nemotron', 'blobs', sha256(shard));
    expect(existsSync(blob)).toBe(false);
    expect(existsSync(`${blob}.incomplete`)).toBe(false);
  });

  it('typed errors: no token for a gated repository, an unknown repository, a file host that keeps failing', async () => {
    const cache = fresh('cache-errors');
    hub.token = 'hf_secret';
    try {
      const e401 = await pullModel(REPO, { endpoint: hub.url, cacheDir: cache, token: false }).catch((e: unknown) => e);
      expect(e401).toMatchObject({ code: 'ERR_DOWNLOAD_UNAUTHORIZED', status: 401 });
      expect((e401 as Error).message).toMatch(/HF_TOKEN/);
    } finally {
      hub.token = undefined;
    }
    await expect(pullModel('nvidia/nope', { endpoint: hub.url, cacheDir: cache })).rejects.toMatchObject({ code: 'ERR_MODEL_NOT_FOUND' });
    await expect(pullModel(`${REPO}/missing.gguf`, { endpoint: hub.url, cacheDir: cache })).rejects.toMatchObject({ code: 'ERR_MODEL_NOT_FOUND' });
    hub.cdnStatus = 503;
    try {
      await expect(pullModel(`${REPO}/${SHARD}`, { endpoint: hub.url, cacheDir: cache, retries: 1 })).rejects.toMatchObject({ code: 'ERR_DOWNLOAD', status: 503 });
    } finally {
      hub.cdnStatus = undefined;
    }
    await expect(loadModel(`hf:${REPO}`, { hub: { endpoint: hub.url, cacheDir: cache, bogus: 1 } as never })).rejects.toThrow(/options\.hub has an unknown option "bogus"/);
    await expect(pullModel(`hf:${REPO}@main`, { revision: 'dev', endpoint: hub.url, cacheDir: cache })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    // A GGUF repository with several files needs one chosen.
    await expect(pullModel(GGUF_REPO, { endpoint: hub.url, cacheDir: cache })).rejects.toThrow(/choose one.*tiny-BF16\.gguf, tiny-F32\.gguf/);
  });

  it("loadModel('hf:…') downloads, then loads, reporting download, plan, tokenizer and load phases", async () => {
    const cache = fresh('cache-load');
    const events: LoadProgress[] = [];
    const model = await loadModel(`hf:${REPO}`, { hub: { endpoint: hub.url, cacheDir: cache }, onProgress: (p) => events.push(p), threads: 1, contextLength: 64, maxSequences: 1 });
    try {
      expect(model.info.path).toBe(path.join(cache, 'models--nvidia--Tiny-Nemotron', 'snapshots', hub.repos.get(REPO)!.commit));
      const r = await model.generate({ prompt: 'Hello', maxTokens: 4 });
      expect(r.usage.completionTokens).toBeGreaterThan(0);
      // The same checkpoint loaded from the source folder gives the same tokens.
      const local = await loadModel(source, { threads: 1, contextLength: 64, maxSequences: 1 });
      try {
        expect((await local.generate({ prompt: 'Hello', maxTokens: 4 })).tokens).toEqual(r.tokens);
      } finally {
        await local.close();
      }
    } finally {
      await model.close();
    }
    const phases = events.map((e) => `${e.phase}:${e.phase === 'download' ? '' : e.fraction}`).filter((s, i, a) => s !== a[i - 1]);
    expect(phases).toEqual(['download:', 'plan:0', 'plan:1', 'tokenizer:0', 'tokenizer:1', 'load:0', 'load:1']);
    const downloads = events.filter((e): e is DownloadProgress => e.phase === 'download');
    expect(downloads.at(-1)!.fraction).toBe(1);
    const plan = events.find((e) => e.phase === 'plan' && e.fraction === 1);
    expect(plan).toMatchObject({ weightBytes: expect.any(Number) });
  });

  it("one GGUF file of a repository: 'hf:owner/name/file.gguf' and hub.file", async () => {
    const cache = fresh('cache-gguf');
    const model = await loadModel(`hf:${GGUF_REPO}/tiny-F32.gguf`, { hub: { endpoint: hub.url, cacheDir: cache }, threads: 1, contextLength: 64, maxSequences: 1 });
    try {
      expect(model.info.path.endsWith(path.join('snapshots', 'b'.repeat(40), 'tiny-F32.gguf'))).toBe(true);
      expect((await model.generate({ prompt: 'Hi', maxTokens: 2 })).usage.completionTokens).toBeGreaterThan(0);
    } finally {
      await model.close();
    }
    const r = await pullModel(`hf:${GGUF_REPO}`, { endpoint: hub.url, cacheDir: cache, file: 'tiny-BF16.gguf' });
    expect(readFileSync(r.path).equals(readFileSync(ggufSource))).toBe(true);
    // Only the chosen files were fetched: no README, not the other GGUF.
    expect(existsSync(path.join(r.snapshot, 'README.md'))).toBe(false);
  });

  it('the CLI: pull with a progress bar, then generate, inspect, bench and serve --model hf:…, honouring HF_ENDPOINT, HF_HUB_CACHE and HF_TOKEN; --version', async () => {
    const cache = fresh('cache-cli');
    hub.token = 'hf_cli';
    try {
      const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_TOKEN: 'hf_cli', NEMOTRON_NODE_PROGRESS: '1', NEMOTRON_NODE_CACHE: path.join(tmp.dir, 'nn-cache') };
      const pulled = await run(process.execPath, [...cli, 'pull', REPO], { env, cwd: root });
      const snapshot = path.join(cache, 'models--nvidia--Tiny-Nemotron', 'snapshots', hub.repos.get(REPO)!.commit);
      expect(pulled.stdout.trim()).toBe(snapshot);
      // The bar's lines (off a terminal: one line per update) show bytes, speed and ETA.
      expect(pulled.stderr).toMatch(/downloading nvidia\/Tiny-Nemotron .*\d+(\.\d+)? [KM]?i?B\/\d+(\.\d+)? [KM]?i?B.*\/s.*ETA/);
      const g = await run(process.execPath, [...cli, 'generate', '--model', `hf:${REPO}`, '--max-tokens', '3', 'abc'], { env, cwd: root });
      expect(g.stderr).toMatch(/generated, finish/);
      expect(g.stderr).toMatch(/loading nvidia\/Tiny-Nemotron .*\[[█░]+\] [0-3]\/3 (reading|mapping|ready)/);
      expect(g.stderr).not.toMatch(/downloading/); // all cached
      // inspect sizes the model from config.json alone: nothing else is fetched.
      const inspectCache = fresh('cache-cli-inspect');
      hub.log.length = 0;
      const ins = await run(process.execPath, [...cli, 'inspect', '--model', `hf:${REPO}`], { env: { ...env, HF_HUB_CACHE: inspectCache }, cwd: root });
      expect(ins.stdout).toMatch(/^config: .*models--nvidia--Tiny-Nemotron\/snapshots\/[0-9a-f]{40}\/config\.json$/m);
      expect(ins.stdout).toMatch(/weights: not present/);
      expect(hub.log.filter((q) => q.method === 'GET' && q.url.includes('/resolve/')).map((q) => q.url.split('/').pop())).toEqual(['config.json']);
      const bench = await run(process.execPath, [...cli, 'bench', '--model', `hf:${REPO}`, '--prompt', '8', '--decode', '2', '--runs', '1', '--threads', '1'], { env, cwd: root });
      expect(bench.stdout).toMatch(/^decode /m);
      // serve names the model after the repository ("Tiny-Nemotron"), not the snapshot's commit hash.
      const served = await new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, [...cli, 'serve', '--model', `hf:${REPO}`, '--port', '0', '--threads', '1'], { env, cwd: root });
        let out = '';
        child.stdout.setEncoding('utf8').on('data', async (d: string) => {
          out += d;
          const m = /listening on (http:\/\/\S+)/.exec(out);
          if (!m) return;
          try {
            const body = (await (await fetch(`${m[1]}/v1/models`)).json()) as { data: Array<{ id: string }> };
            resolve(body.data.map((x) => x.id).join(','));
          } catch (err) {
            reject(err as Error);
          } finally {
            child.kill('SIGTERM');
          }
        });
        child.on('exit', (code) => reject(new Error(`serve exited (${code}) before answering: ${out}`)));
      });
      expect(served).toBe('Tiny-Nemotron');
      const v = await run(process.execPath, [...cli, '--version'], { env, cwd: root });
      expect(v.stdout.trim()).toBe(JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version);
    } finally {
      hub.token = undefined;
    }
  });
});
