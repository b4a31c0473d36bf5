#!/usr/bin/env node
// The package.json that is published, written into a staging copy: the repository's own package.json plus
// `optionalDependencies` on every platform package under packages/ (today @nemotron-node/linux-x64-cuda),
// at their exact versions. npm installs an optional dependency only where its os/cpu/libc fields match,
// and skips it (with no error) where it cannot be fetched.
//
// Why not in the repository's package.json itself: `npm ci` here needs every dependency in
// package-lock.json, and a package that is not on the registry yet cannot be locked (npm ci fails with
// "Missing: @nemotron-node/linux-x64-cuda from lock file"). Once the platform package is published, move
// the field into package.json (and the lock) and drop this step.
//
// Usage: node scripts/release-manifest.mjs <staged package.json>
import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const target = process.argv[2];
if (!target) {
  console.error('usage: node scripts/release-manifest.mjs <package.json>');
  process.exit(2);
}
const pkg = JSON.parse(readFileSync(target, 'utf8'));
const optional = { ...(pkg.optionalDependencies ?? {}) };
for (const dir of readdirSync(path.join(repo, 'packages'))) {
  const file = path.join(repo, 'packages', dir, 'package.json');
  if (!existsSync(file)) continue;
  const p = JSON.parse(readFileSync(file, 'utf8'));
  optional[p.name] = p.version;
}
pkg.optionalDependencies = optional;
writeFileSync(target, `${JSON.stringify(pkg, null, 2)}\n`);
console.log(`release-manifest: optionalDependencies ${JSON.stringify(optional)}`);
