// A local stand-in for the Hugging Face hub, on 127.0.0.1, serving repositories the way the hub does:
//
//   GET  /api/models/{owner}/{name}/revision/{rev}[?blobs=true]   { id, sha, siblings: [{ rfilename, size, blobId, lfs }] }
//   HEAD|GET /{owner}/{name}/resolve/{rev}/{path}
//        small files: 200 with ETag = the git blob id, X-Repo-Commit, Content-Length
//        LFS files (.safetensors, .gguf): 302 to the file host (a second server: another origin) with
//        ETag = the pointer's git blob id, X-Linked-Etag = the sha256, X-Linked-Size, X-Repo-Commit
//   GET  {file host}/lfs/{sha256}?X-Amz-Signature=…   Range (206 + Content-Range), ETag; can drop the
//        connection in the middle of a file once, or serve corrupted bytes
//
// Every request is logged (server, method, path, headers) so tests can check what a client sent where.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface HubRepo {
  /** path in the repository -> contents */
  files: Map<string, Buffer>;
  /** the commit `main` points at */
  commit: string;
}

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface HubServer {
  url: string;
  cdnUrl: string;
  repos: Map<string, HubRepo>;
  log: LoggedRequest[];
  /** Required bearer token on the hub (API and resolve), when set. */
  token: string | undefined;
  /** Paths whose next file-host GET from byte 0 is cut off after this many bytes (then the entry is removed). */
  dropAfter: Map<string, number>;
  /** Paths whose bytes the file host serves with one byte flipped. */
  corrupt: Set<string>;
  /** Answer every file-host GET with this status (e.g. 503), while set. */
  cdnStatus: number | undefined;
  /**
   * The file host's URLs carry a signature that the hub issues; only the latest is accepted (403 otherwise),
   * as pre-signed URLs expire. A dropped connection also rotates it when `rotateOnDrop` is set.
   */
  signature: number;
  rotateOnDrop: boolean;
  close(): Promise<void>;
}

export function gitBlobId(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export function isLfs(p: string): boolean {
  return p.endsWith('.safetensors') || p.endsWith('.gguf');
}

function lfsPointer(data: Buffer): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(data)}\nsize ${data.length}\n`);
}

/** A repository from a folder (every file at the top level), plus extra files. */
export function repoFromDir(dir: string, extra: Record<string, string | Buffer> = {}, commitSeed = dir): HubRepo {
  const files = new Map<string, Buffer>();
  for (const f of readdirSync(dir)) files.set(f, readFileSync(path.join(dir, f)));
  for (const [k, v] of Object.entries(extra)) files.set(k, Buffer.isBuffer(v) ? v : Buffer.from(v));
  return { files, commit: createHash('sha1').update(commitSeed).digest('hex') };
}

export async function startHubServer(): Promise<HubServer> {
  const log: LoggedRequest[] = [];
  const state: Omit<HubServer, 'url' | 'cdnUrl' | 'close'> = {
    repos: new Map(),
    log,
    token: undefined,
    dropAfter: new Map(),
    corrupt: new Set(),
    cdnStatus: undefined,
    signature: 1,
    rotateOnDrop: false,
  };
  const byHash = () => {
    const m = new Map<string, { path: string; data: Buffer }>();
    for (const repo of state.repos.values()) for (const [p, d] of repo.files) if (isLfs(p)) m.set(sha256(d), { path: p, data: d });
    return m;
  };

  const cdn = http.createServer((req, res) => {
    log.push({ server: 'cdn', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const m = /^\/lfs\/([0-9a-f]{64})\?X-Amz-Signature=sig(\d+)$/.exec(req.url ?? '');
    const hit = m ? byHash().get(m[1]!) : undefined;
    if (!hit || Number(m![2]) !== state.signature) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('AccessDenied');
      return;
    }
    if (state.cdnStatus !== undefined) {
      res.writeHead(state.cdnStatus, { 'content-type': 'text/plain' }).end('unavailable');
      return;
    }
    let data = hit.data;
    if (state.corrupt.has(hit.path)) {
      data = Buffer.from(data);
      data[data.length >> 1] ^= 0xff;
    }
    const etag = `"${sha256(hit.data)}"`;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let start = 0;
    let end = data.length - 1;
    if (req.headers.range !== undefined) {
      if (!range || Number(range[1]) >= data.length) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
        return;
      }
      start = Number(range[1]);
      if (range[2]) end = Math.min(end, Number(range[2]));
    }
    const body = data.subarray(start, end + 1);
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'content-length': body.length, 'accept-ranges': 'bytes', etag };
    if (range) headers['content-range'] = `bytes ${start}-${end}/${data.length}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const cut = start === 0 ? state.dropAfter.get(hit.path) : undefined;
    if (cut !== undefined && cut < body.length) {
      state.dropAfter.delete(hit.path);
      if (state.rotateOnDrop) state.signature++;
      res.write(body.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  });

  const hub = http.createServer((req, res) => {
    log.push({ server: 'hub', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const json = (status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
      res.end(req.method === 'HEAD' ? undefined : text);
    };
    if (state.token !== undefined && req.headers.authorization !== `Bearer ${state.token}`) {
      json(401, { error: 'Invalid credentials in Authorization header' }, { 'x-error-code': 'GatedRepo' });
      return;
    }
    const api = /^\/api\/models\/([^/]+)\/([^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (api && req.method === 'GET') {
      const id = `${api[1]}/${api[2]}`;
      const repo = state.repos.get(id);
      const rev = decodeURIComponent(api[3]!);
      if (!repo) return json(404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
      if (rev !== 'main' && rev !== repo.commit) return json(404, { error: `Invalid rev id: ${rev}` }, { 'x-error-code': 'RevisionNotFound' });
      const blobs = url.searchParams.get('blobs') === 'true';
      return json(200, {
        _id: 'x',
        id,
        sha: repo.commit,
        siblings: [...repo.files].map(([p, d]) => ({
          rfilename: p,
          ...(blobs ? { size: d.length, blobId: gitBlobId(isLfs(p) ? lfsPointer(d) : d), ...(isLfs(p) ? { lfs: { sha256: sha256(d), size: d.length, pointerSize: lfsPointer(d).length } } : {}) } : {}),
        })),
      });
    }
    const resolve = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (resolve && (req.method === 'GET' || req.method === 'HEAD')) {
      const repo = state.repos.get(`${resolve[1]}/${resolve[2]}`);
      const rev = decodeURIComponent(resolve[3]!);
      const file = resolve[4]!.split('/').map(decodeURIComponent).join('/');
      if (!repo) return json(404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
      if (rev !== 'main' && rev !== repo.commit) return json(404, { error: 'Revision not found' }, { 'x-error-code': 'RevisionNotFound' });
      const data = repo.files.get(file);
      if (!data) return json(404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': repo.commit });
      if (isLfs(file)) {
        const body = 'Found. Redirecting';
        res.writeHead(302, {
          location: `${cdnUrl}/lfs/${sha256(data)}?X-Amz-Signature=sig${state.signature}`,
          etag: `"${gitBlobId(lfsPointer(data))}"`,
          'x-linked-etag': `"${sha256(data)}"`,
          'x-linked-size': String(data.length),
          'x-repo-commit': repo.commit,
          'content-length': Buffer.byteLength(body),
        });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      res.writeHead(200, { etag: `"${gitBlobId(data)}"`, 'x-repo-commit': repo.commit, 'content-length': data.length, 'content-type': 'application/octet-stream' });
      res.end(req.method === 'HEAD' ? undefined : data);
      return;
    }
    json(404, { error: 'not found' });
  });

  const listen = (s: http.Server) => new Promise<string>((resolve) => s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)));
  const cdnUrl = await listen(cdn);
  const hubUrl = await listen(hub);
  const server: HubServer = Object.assign(state, {
    url: hubUrl,
    cdnUrl,
    close: async () => {
      hub.closeAllConnections();
      cdn.closeAllConnections();
      await Promise.all([new Promise((r) => hub.close(r)), new Promise((r) => cdn.close(r))]);
    },
  });
  return server;
}
