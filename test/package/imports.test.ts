// Layers point one way: the import graph of lib/ (type-only imports included) has no cycle
// (scripts/check-imports.mjs), and the check itself finds a cycle when there is one.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const SCRIPT = path.join(root, 'scripts/check-imports.mjs');

function check(dir: string): { status: number | null; report: { files: number; edges: number; cycles: string[][] } } {
  const r = spawnSync(process.execPath, [SCRIPT, '--json', dir], { encoding: 'utf8' });
  return { status: r.status, report: JSON.parse(r.stdout) as { files: number; edges: number; cycles: string[][] } };
}

describe('import graph', () => {
  it('lib/ has no import cycle', () => {
    const { status, report } = check(path.join(root, 'lib'));
    expect(report.files).toBeGreaterThan(50);
    expect(report.edges).toBeGreaterThan(100);
    expect(report.cycles).toEqual([]);
    expect(status).toBe(0);
  });

  it('a cycle is found, through type-only, export-from and dynamic imports', () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'imports-'));
    try {
      const dir = path.join(tmp, 'lib');
      mkdirSync(path.join(dir, 'sub'), { recursive: true });
      writeFileSync(path.join(dir, 'a.ts'), "import type { B } from './sub/b.js';\nexport type A = B;\n");
      writeFileSync(path.join(dir, 'sub/b.ts'), "export { c } from '../c.js';\nexport type B = number;\n");
      writeFileSync(path.join(dir, 'c.ts'), "export const c = () => import('./a.js');\n");
      writeFileSync(path.join(dir, 'd.ts'), "// import { x } from './e.js';\nimport { c } from './c.js';\nexport const d = c;\n");
      writeFileSync(path.join(dir, 'e.ts'), "import { d } from './d.js';\nexport const x = d;\n");
      const { status, report } = check(dir);
      expect(report.cycles).toEqual([['lib/a.ts', 'lib/c.ts', 'lib/sub/b.ts']]);
      expect(status).toBe(1);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
