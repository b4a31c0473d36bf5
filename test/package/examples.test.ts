// Every example runs, as a user would run it, on the tiny default model: none can rot.
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

import { tempDir } from '../helpers.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const expected: Record<string, RegExp> = {
  'generate.ts': /parameters/,
  'chat.ts': /\[done\] (stop|length); \d+ reasoning \+ \d+ answer tokens/,
  'concurrent.ts': /tokens in [\d.]+ s over 4 streams; \d+ batched steps/,
  'session.ts': /restored session continues identically: true/,
  'remote.ts': /\[local\][\s\S]*\[remote\][\s\S]*session moved from \S+ to \S+: 4 messages kept, \d+ tokens cached \(a cache miss\), failovers 1/,
  'server.ts': /chat\.completion: finish=(stop|length|tool_calls); \d+ prompt \+ \d+ completion tokens[\s\S]*streamed \d+ chunks; usage/,
};

describe('examples', () => {
  const cache = tempDir('examples-cache');
  afterAll(() => cache.cleanup());
  const files = readdirSync(path.join(root, 'examples')).filter((f) => f.endsWith('.ts'));

  it('every example has an expectation here', () => {
    expect(files.sort()).toEqual(Object.keys(expected).sort());
  });

  for (const file of Object.keys(expected)) {
    it(`${file} runs and prints what it promises`, async () => {
      const r = await run(process.execPath, ['--import', 'tsx', path.join(root, 'examples', file)], {
        cwd: root,
        env: { ...process.env, NEMOTRON_NODE_CACHE: cache.dir },
      });
      expect(r.stdout).toMatch(expected[file]!);
    });
  }
});
