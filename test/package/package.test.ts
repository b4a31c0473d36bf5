// The published package: scripts/pack-check.sh builds the prebuilt binary and dist/, packs, installs the
// tarball into a fresh project where nothing can be compiled, and uses it through import, require, the
// CLI and the types; then installs it once more building from source (the fallback). Its output lines
// are checked here. Takes a few minutes (two native builds on 2 cores).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
/** The budget the script enforces (and reports). */
const BUDGET = 15_000_000;

function packCheck(): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(root, 'scripts/pack-check.sh')], { cwd: root, env: { ...process.env, PACK_BUDGET_BYTES: String(BUDGET) } });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe.skipIf(process.platform !== 'linux' || process.arch !== 'x64')('npm package (scripts/pack-check.sh)', () => {
  it('packs within budget, installs without a compiler from the prebuilt binary, and works through import, require, the CLI and the types', { timeout: 600_000 }, async () => {
    const { code, out } = await packCheck();
    if (code !== 0) throw new Error(`pack-check.sh exited ${code}:\n${out}`);
    const lines = out.split('\n').filter((l) => l.startsWith('pack-check: '));
    const line = (re: RegExp): RegExpExecArray => {
      for (const l of lines) {
        const m = re.exec(l);
        if (m) return m;
      }
      throw new Error(`no line matching ${re} in:\n${out}`);
    };

    // The prebuilt binary: prebuildify --napi --strip, tagged glibc.
    line(/^pack-check: prebuild prebuilds\/linux-x64\/nemotron-node\.glibc\.node \(\d+ bytes, stripped,/);
    // Contents and size.
    line(/^pack-check: contents ok: dist \(ESM \+ \.d\.ts\), dist\/cjs \(CommonJS \+ \.d\.ts\), prebuilds\/linux-x64, csrc \+ binding\.gyp/);
    const size = line(/^pack-check: tarball nemotron-node-[\d.]+\.tgz (\d+) bytes packed .*; budget (\d+) bytes$/);
    expect(Number(size[1])).toBeGreaterThan(100_000);
    expect(Number(size[1])).toBeLessThanOrEqual(BUDGET);
    expect(Number(size[2])).toBe(BUDGET);
    // Installed with no compiler, make, python or node-gyp, from the prebuild: nothing compiled.
    line(/^pack-check: install environment: PATH has only node, npm, npx, sh, bash, env \(no compiler, make or python\); npm_config_node_gyp=\/bin\/false; npm_config_build_from_source=false$/);
    const install = line(/^pack-check: install ([\d.]+) s \(prebuilt binary: nothing compiled, no build\/ folder\)$/);
    expect(Number(install[1])).toBeLessThan(300);
    // Used: the CLI (making the default tiny model), import and require, the same tokens from both.
    line(/^pack-check: cli: nemotron-node generate made the default tiny model/);
    line(/^pack-check: import ok: 12 tokens, finish (length|stop), planMemory\/NemotronError exported$/);
    line(/^pack-check: require ok: 12 tokens, finish (length|stop), planMemory\/NemotronError exported$/);
    line(/^pack-check: import and require agree token for token \(require resolves to dist\/cjs\)$/);
    line(/^pack-check: types ok: import \(dist\/index\.d\.ts\) and require \(dist\/cjs\/index\.d\.ts\)/);
    // The fallback where no prebuild fits: the install script compiles from the packed sources.
    line(/^pack-check: source fallback: npm_config_build_from_source=true compiled build\/Release\/nemotron_node\.node during install \([\d.]+ s\) and it runs$/);
    expect(lines.at(-1)).toBe('pack-check: OK');
  });
});
