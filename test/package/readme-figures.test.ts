// The README's package figures are written by scripts/readme-figures.mjs from what pack-check measured
// (npm pack --json and the prebuilt binary), never typed in: the script's formatting, its write and check
// modes, and that README.md carries the block it maintains.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { tempDir } from '../helpers.js';

const root = path.resolve(import.meta.dirname, '../..');
const script = path.join(root, 'scripts/readme-figures.mjs');
const run = (args: string[]) =>
  promisify(execFile)(process.execPath, [script, ...args]).then(
    (r) => ({ code: 0, out: r.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
  );

describe('README figures', () => {
  it('README.md has the measured block', () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    expect(readme).toMatch(/<!-- figures:package -->\nThe package is \d+\.\d+ MB \(\d+\.\d+ MB unpacked\)[^]*stripped prebuilt binary \(\d+\.\d+ MB\)[^]*<!-- \/figures:package -->/);
  });

  it('writes the figures measured from npm pack --json and the binary, and --check finds stale ones', async () => {
    const tmp = tempDir('figures');
    try {
      const pack = path.join(tmp.dir, 'pack.json');
      const bin = path.join(tmp.dir, 'x.node');
      const readme = path.join(tmp.dir, 'README.md');
      writeFileSync(pack, JSON.stringify([{ size: 912_345, unpackedSize: 2_712_000, entryCount: 100 }]));
      writeFileSync(bin, Buffer.alloc(1_340_000));
      writeFileSync(readme, '# x\n<!-- figures:package -->\nold words\n<!-- /figures:package -->\nafter\n');
      const args = ['--pack-json', pack, '--binary', bin, '--readme', readme];
      expect((await run([...args, '--check'])).code).toBe(1);
      expect((await run([...args, '--write'])).code).toBe(0);
      const text = readFileSync(readme, 'utf8');
      expect(text).toContain('The package is 0.91 MB (2.7 MB unpacked)');
      expect(text).toContain('stripped prebuilt binary (1.3 MB)');
      expect(text.endsWith('<!-- /figures:package -->\nafter\n')).toBe(true);
      const check = await run([...args, '--check']);
      expect(check.code).toBe(0);
      expect(check.out).toMatch(/up to date/);
    } finally {
      tmp.cleanup();
    }
  });
});
