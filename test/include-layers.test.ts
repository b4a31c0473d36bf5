// The native include graph points one way (issue #17): scripts/check-includes.mjs derives each file's
// layer from its folder (core < model < kernels < cache < engine < cuda < addon < native-tests) and
// fails on an #include that points up, on a cycle, and on <napi.h> outside csrc/addon.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');

describe('native include layers', () => {
  it('no #include points up or closes a cycle', () => {
    const r = spawnSync(process.execPath, [path.join(root, 'scripts/check-includes.mjs')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/all pointing down/);
  });
});
