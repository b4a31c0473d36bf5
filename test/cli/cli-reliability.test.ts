// Issue #13 in the CLI: `inspect --check` scans the weights for NaN/Inf (loadModel checkTensors) and names
// the first bad tensor with exit status 1; `serve --help` states the request time limits and their defaults.
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeTinyModel } from '../../lib/index.js';
import { DEFAULT_TIMEOUTS } from '../../lib/server/limits.js';
import { tempDir } from '../helpers.js';

const root = path.resolve(import.meta.dirname, '../..');
const tmp = tempDir('cli-reliability');
const good = path.join(tmp.dir, 'good');

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli.ts'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  await makeTinyModel(good, { seed: 2 });
});
afterAll(() => tmp.cleanup());

describe('inspect --check', () => {
  it('a clean checkpoint: every weight is finite', () => {
    const r = cli('inspect', '--model', good, '--check');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tensors: every weight is finite/);
    const j = cli('inspect', '--model', good, '--check', '--json');
    expect(JSON.parse(j.stdout).check.tensors).toBe('finite');
  });

  it('a NaN in one tensor: exit status 1 naming it', () => {
    const bad = path.join(tmp.dir, 'bad');
    cpSync(good, bad, { recursive: true });
    const file = path.join(bad, 'model.safetensors');
    const bytes = readFileSync(file);
    const len = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    const name = Object.keys(header).find((k) => k.endsWith('layers.1.mixer.down_proj.weight'))!;
    bytes.writeUInt16LE(0x7fc0, 8 + len + header[name]!.data_offsets[0] + 6); // a bf16 NaN
    writeFileSync(file, bytes);
    const r = cli('inspect', '--model', bad, '--check');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/layers\.1\.mixer\.down_proj\.weight.*NaN at element 3/);
    expect(cli('inspect', '--model', bad).code).toBe(0); // without --check the weights are not read
  });
});

describe('serve --help', () => {
  it('states the header, body and idle timeouts with their defaults', () => {
    const r = cli('serve', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`--headers-timeout <ms>`);
    expect(r.stdout).toContain(`(default: ${DEFAULT_TIMEOUTS.headersTimeoutMs})`);
    expect(r.stdout).toContain(`--body-timeout <ms>`);
    expect(r.stdout).toContain(`(default: ${DEFAULT_TIMEOUTS.bodyTimeoutMs})`);
    expect(r.stdout).toContain(`--idle-timeout <ms>`);
    expect(r.stdout).toContain(`(default: ${DEFAULT_TIMEOUTS.idleTimeoutMs})`);
    expect(r.stdout).toMatch(/Expect: 100-continue/);
  });
});
