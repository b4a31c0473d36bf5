// The API reference (`npm run docs`, TypeDoc): both entry points (nemotron-node and nemotron-node/server)
// are documented and every type a documented signature references is exported, so TypeDoc has nothing to
// warn about (typedoc.json treats warnings as errors).
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { tempDir } from '../helpers.js';

const root = path.resolve(import.meta.dirname, '../..');

describe('API reference', () => {
  it('typedoc documents nemotron-node and nemotron-node/server without a warning', async () => {
    const tmp = tempDir('docs');
    try {
      const out = path.join(tmp.dir, 'api');
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(root, 'node_modules/typedoc/bin/typedoc'), '--out', out], { cwd: root });
      expect(`${stdout}${stderr}`).not.toMatch(/warning/i);
      const modules = readdirSync(path.join(out, 'modules')).join(' ');
      expect(modules).toMatch(/server/);
      const pages = readdirSync(path.join(out, 'functions')).join(' ');
      for (const name of ['createServer', 'createRequestHandler', 'loadModel']) expect(pages).toContain(name);
      expect(existsSync(path.join(out, 'variables'))).toBe(true); // openaiRoutes
    } finally {
      tmp.cleanup();
    }
  }, 120_000);
});
