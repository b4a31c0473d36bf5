// Issue #14 item 6: the package installs on every Node version it claims (package.json engines.node).
// - every package of the clone's tree (package-lock.json, dev and optional ones too) declares an engines
//   range that includes the whole claim, so `npm ci --engine-strict` (.ci/run) passes on each of them;
// - a consumer's install of the packed package (where our `overrides` do not apply) passes
//   --engine-strict too, with no cookie@2 (engines >=22) pulled in through fastify -> light-my-request;
// - node-gyp, the devDependency that builds the addon in a clone, runs on this Node and downloads the
//   headers when none are cached (node-gyp 13 crashed on Node 20 while loading undici 8, before any
//   download); the headers come from a local dist server here, never nodejs.org.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

import { tempDir } from '../helpers.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const semver = createRequire(import.meta.url)('semver') as { satisfies(v: string, r: string): boolean; subset(a: string, b: string): boolean };
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string }; devDependencies: Record<string, string> };

describe('engines: installs on every Node the package claims', () => {
  const tmp = tempDir('engines');
  afterAll(() => tmp.cleanup());

  it('the claim covers this Node, and every package in package-lock.json includes the whole claim', async () => {
    expect(pkg.engines.node).toBe('^20.19.0 || ^22.13.0 || >=24.0.0');
    expect(semver.satisfies(process.version, pkg.engines.node)).toBe(true);
    const r = await run(process.execPath, [path.join(root, 'scripts/check-engines.mjs')], { cwd: root });
    console.log(r.stdout.trim());
    expect(r.stdout).toMatch(/engines: package-lock\.json .*: \d+ packages, \d+ declare engines\.node, 0 do not include/);
  });

  it("a consumer's install of the packed package passes --engine-strict, with light-my-request 6.6.0 and cookie 1.x", async () => {
    const r = await run(process.execPath, [path.join(root, 'scripts/check-engines.mjs'), '--consumer'], { cwd: root, timeout: 240_000 });
    console.log(r.stdout.trim());
    expect(r.stdout).toMatch(/npm install --engine-strict of nemotron-node-[\d.]+\.tgz in a fresh project: added \d+ packages/);
    expect(r.stdout).toMatch(/a consumer's tree .*: \d+ packages, \d+ declare engines\.node, 0 do not include/);
    expect(r.stdout).toMatch(/cookie@1\.\d+\.\d+/);
    expect(r.stdout).not.toMatch(/cookie@2/);
    expect(r.stdout).not.toMatch(/light-my-request@6\.(?!6\.0)/);
  }, 300_000);

  it('node-gyp (devDependency) runs on this Node and installs headers from a dist server when none are cached', async () => {
    const gypPkg = JSON.parse(readFileSync(path.join(root, 'node_modules/node-gyp/package.json'), 'utf8')) as { version: string; engines: { node: string } };
    expect(gypPkg.version).toBe(pkg.devDependencies['node-gyp']);
    expect(semver.subset(pkg.engines.node, gypPkg.engines.node)).toBe(true);
    // This Node's own headers, packed as nodejs.org packs them: node-vX/include/node/*, and SHASUMS256.txt.
    const include = path.resolve(path.dirname(process.execPath), '..', 'include', 'node');
    if (!existsSync(path.join(include, 'node_api.h'))) {
      console.log(`no headers at ${include}: skipping the download check`);
      return;
    }
    const version = process.version;
    const name = `node-${version}-headers.tar.gz`;
    const stage = path.join(tmp.dir, 'stage');
    const dist = path.join(tmp.dir, 'dist', version);
    mkdirSync(path.join(stage, `node-${version}`, 'include'), { recursive: true });
    mkdirSync(dist, { recursive: true });
    cpSync(include, path.join(stage, `node-${version}`, 'include', 'node'), { recursive: true });
    await run('tar', ['-czf', path.join(dist, name), '-C', stage, `node-${version}`]);
    const sha = createHash('sha256').update(readFileSync(path.join(dist, name))).digest('hex');
    writeFileSync(path.join(dist, 'SHASUMS256.txt'), `${sha}  ${name}\n`);
    const requests: string[] = [];
    const server = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      const file = path.join(tmp.dir, 'dist', decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
      if (!file.startsWith(path.join(tmp.dir, 'dist')) || !existsSync(file)) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(readFileSync(file));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const devdir = path.join(tmp.dir, 'devdir'); // empty: no cached headers
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_(nodedir|devdir|tarball|dist_url)$/i.test(k)));
      const r = await run(
        process.execPath,
        [path.join(root, 'node_modules/node-gyp/bin/node-gyp.js'), 'install', '--devdir', devdir, '--dist-url', `http://127.0.0.1:${(server.address() as AddressInfo).port}`, '--ensure'],
        { cwd: tmp.dir, env, timeout: 120_000 },
      );
      expect(r.stderr).toMatch(/gyp info ok/);
      expect(requests).toContain(`/${version}/${name}`);
      expect(existsSync(path.join(devdir, version.slice(1), 'include', 'node', 'node_api.h'))).toBe(true);
    } finally {
      server.close();
    }
  }, 180_000);
});
