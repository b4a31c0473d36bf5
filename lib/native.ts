/**
 * Finds and loads the native addon. Order: the NEMOTRON_NODE_BINARY environment variable (an explicit
 * .node path), then node-gyp-build's search from the package root (build/Release, build/Debug,
 * prebuilds/<platform>-<arch>/). Failure gives one NativeBinaryError that lists what was tried and
 * what to do.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import type { NativeAddon } from './addon-types.js';
import { NativeBinaryError } from './errors.js';
import { moduleUrl } from './module-url.js';

// Not named `require`: the CommonJS build (dist/cjs) has its own, and this must work in both builds.
const requireHere = createRequire(moduleUrl);

/** The package root: the nearest folder above this module holding binding.gyp (lib/ and dist/ sit one level below it, dist/cjs/ two). */
export const packageRoot = findPackageRoot(path.dirname(fileURLToPath(moduleUrl)));

function findPackageRoot(start: string): string {
  for (let dir = start; ; ) {
    if (existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(start, '..');
    dir = up;
  }
}

let cached: NativeAddon | undefined;

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const override = process.env.NEMOTRON_NODE_BINARY;
  try {
    if (override) {
      cached = requireHere(path.resolve(override)) as NativeAddon;
    } else {
      const nodeGypBuild = requireHere('node-gyp-build') as (dir: string) => unknown;
      cached = nodeGypBuild(packageRoot) as NativeAddon;
    }
    return cached;
  } catch (cause) {
    const tried = override ? `NEMOTRON_NODE_BINARY=${override}` : `build/Release, build/Debug and prebuilds/${process.platform}-${process.arch} under ${packageRoot}`;
    throw new NativeBinaryError(
      `could not load the nemotron-node native addon (tried ${tried}): ${(cause as Error).message}\n` +
        'Possible solutions:\n' +
        '- run `npm rebuild nemotron-node` (needs python3, make and a C++17 compiler) to build it from source;\n' +
        '- on Linux x64, reinstall so the prebuilt binary is picked up;\n' +
        '- set NEMOTRON_NODE_BINARY to the path of a nemotron_node.node you built.',
      { cause },
    );
  }
}

/** The path of the CPU addon loadNative() loads (NEMOTRON_NODE_BINARY, else node-gyp-build's choice), if found. */
export function nativeBinaryPath(): string | undefined {
  const override = process.env.NEMOTRON_NODE_BINARY;
  if (override) return path.resolve(override);
  try {
    const nodeGypBuild = requireHere('node-gyp-build') as { resolve?: (dir: string) => string; path?: (dir: string) => string };
    return (nodeGypBuild.resolve ?? nodeGypBuild.path)?.(packageRoot);
  } catch {
    return undefined;
  }
}
