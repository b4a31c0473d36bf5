// The command line, run as a user runs it: a child process, stdout and stderr read back.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

import { tempDir } from '../helpers.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const cli = ['--import', 'tsx', path.join(root, 'lib/cli.ts')];

describe('nemotron-node CLI', () => {
  const cache = tempDir('cli-cache');
  const out = tempDir('cli-model');
  afterAll(() => {
    cache.cleanup();
    out.cleanup();
  });
  const env = { ...process.env, NEMOTRON_NODE_CACHE: cache.dir };

  it('generate with no --model makes the tiny default model once, says its weights are random, and streams text', async () => {
    const first = await run(process.execPath, [...cli, 'generate', '--max-tokens', '12', 'Hello there'], { env, cwd: root });
    expect(first.stderr).toMatch(/weights are random/);
    expect(first.stderr).toMatch(/generated, finish: (stop|length)/);
    expect(first.stdout.length).toBeGreaterThan(0);
    expect(existsSync(path.join(cache.dir, 'tiny-default-v1', 'config.json'))).toBe(true);
    // Greedy by default: the second run (cached model) prints the same text.
    const second = await run(process.execPath, [...cli, 'generate', '--max-tokens', '12', 'Hello there'], { env, cwd: root });
    expect(second.stdout).toBe(first.stdout);
  });

  it('make-tiny-model writes a loadable checkpoint', async () => {
    const dir = path.join(out.dir, 'm');
    const r = await run(process.execPath, [...cli, 'make-tiny-model', dir, '--seed', '4', '--pattern', 'M*-', '--dtype', 'f32'], { env, cwd: root });
    expect(r.stdout).toMatch(/parameters, random weights/);
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8').replace(/\bInfinity\b/g, '1e999')) as { hybrid_override_pattern: string };
    expect(config.hybrid_override_pattern).toBe('M*-');
    const g = await run(process.execPath, [...cli, 'generate', '--model', dir, '--max-tokens', '4', 'abc'], { env, cwd: root });
    expect(g.stderr).not.toMatch(/weights are random/);
  });

  it('a bad model path exits 1 with the typed error code', async () => {
    const err = await run(process.execPath, [...cli, 'generate', '--model', path.join(out.dir, 'nope'), 'x'], { env, cwd: root }).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).toBe(1);
    expect((err as { stderr: string }).stderr).toMatch(/ERR_MODEL_NOT_FOUND/);
  });
});
