#!/usr/bin/env node
// Every dependency must run on every Node version this package claims (package.json `engines.node`):
// each package's own `engines.node` range must include the whole claimed range (semver.subset).
//
//   node scripts/check-engines.mjs              the clone's tree: every package in package-lock.json
//                                               (dev and optional ones included: `npm ci --engine-strict`
//                                               installs them)
//   node scripts/check-engines.mjs --consumer   the tree a user gets: `npm pack` (no scripts), install the
//                                               tarball into a fresh project with --engine-strict (where the
//                                               package's own `overrides` do not apply), then check that
//                                               project's lock the same way and print `npm ls cookie
//                                               light-my-request`
//
// Output lines start with "engines:"; exit status 1 on any package whose range misses part of the claim.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
const semver = require('semver');
const repo = path.resolve(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8'));
const claim = pkg.engines?.node;
if (!claim || !semver.validRange(claim)) {
  console.error(`engines: package.json has no valid engines.node (${claim})`);
  process.exit(1);
}

/** [name@version, range] of every package in a lockfile whose engines.node does not include the claim. */
function misses(lockFile) {
  const lock = JSON.parse(readFileSync(lockFile, 'utf8'));
  const bad = [];
  let checked = 0;
  for (const [where, p] of Object.entries(lock.packages ?? {})) {
    if (!where) continue; // the root project
    const range = p.engines?.node;
    if (typeof range !== 'string') continue;
    checked++;
    if (!semver.validRange(range) || !semver.subset(claim, range)) bad.push(`${where.replace(/^.*node_modules\//, '')}@${p.version} (engines.node "${range}"${p.dev ? ', dev' : ''}${p.optional ? ', optional' : ''})`);
  }
  return { bad, checked, total: Object.keys(lock.packages ?? {}).length - 1 };
}

function report(what, { bad, checked, total }) {
  console.log(`engines: ${what}: ${total} packages, ${checked} declare engines.node, ${bad.length} do not include "${claim}"`);
  for (const b of bad) console.log(`engines:   ${b}`);
  return bad.length === 0;
}

let ok;
if (process.argv.includes('--consumer')) {
  const work = mkdtempSync(path.join(os.tmpdir(), 'nemotron-engines-'));
  try {
    const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const tgz = path.join(work, JSON.parse(out.slice(out.search(/^\[\s*$/m)))[0].filename);
    const app = path.join(work, 'app');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    // --ignore-scripts: the dependency tree is the point here, not the addon (scripts/pack-check.sh installs for real).
    const log = execFileSync('npm', ['install', '--engine-strict', '--ignore-scripts', '--no-audit', '--no-fund', '--no-update-notifier', '--prefer-offline', tgz], {
      cwd: app,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    console.log(`engines: npm install --engine-strict of ${path.basename(tgz)} in a fresh project: ${log.trim().split('\n').pop()}`);
    ok = report('a consumer\'s tree (nemotron-node and its dependencies, no overrides)', misses(path.join(app, 'package-lock.json')));
    const ls = execFileSync('npm', ['ls', '--all', 'cookie', 'light-my-request'], { cwd: app, encoding: 'utf8' });
    for (const line of ls.trim().split('\n')) console.log(`engines: npm ls: ${line}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
} else {
  ok = report('package-lock.json (the clone: dev and optional packages included)', misses(path.join(repo, 'package-lock.json')));
}
process.exit(ok ? 0 : 1);
