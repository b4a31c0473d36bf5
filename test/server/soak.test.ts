// The soak (scripts/soak.ts, issue #13) in short: 64 clients for 15 s through the library and the server,
// every way a request can end; the script checks the end state itself (0 live sequences, KV blocks only
// in the prefix cache, RSS within 10 % of warm-up, no unexpected error). The long run: npm run soak.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

it('64 clients for 15 s leave nothing behind', () => {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', 'scripts/soak.ts', '--seconds', '15', '--streams', '64'], { cwd: root, encoding: 'utf8', timeout: 180_000 });
  console.log(r.stdout.trim());
  if (r.status !== 0) console.log(r.stderr);
  expect(r.stdout).toContain('soak: PASS');
  expect(r.status).toBe(0);
}, 200_000);
