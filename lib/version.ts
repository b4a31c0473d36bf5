/** This package's version, read from its package.json (one folder above lib/ and dist/). */
import { readFileSync } from 'node:fs';

import { moduleUrl } from './module-url.js';

export function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, moduleUrl), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'nemotron-node' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there: dist/cjs is one level deeper
    }
  }
  return 'unknown';
}
