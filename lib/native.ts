/**
 * Finds and loads the native addon. Order: the NEMOTRON_NODE_BINARY environment variable (an explicit
 * .node path), then node-gyp-build's search from the package root (build/Release, build/Debug,
 * prebuilds/<platform>-<arch>/). Failure gives one NativeBinaryError that lists what was tried and
 * what to do.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import type { NativeAddon } from './addon-types.js';
import { NativeBinaryError } from './errors.js';

const require = createRequire(import.meta.url);
/** The package root: lib/ and dist/ both sit one level below it. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let cached: NativeAddon | undefined;

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const override = process.env.NEMOTRON_NODE_BINARY;
  try {
    if (override) {
      cached = require(path.resolve(override)) as NativeAddon;
    } else {
      const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
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
