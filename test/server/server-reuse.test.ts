// The server as a stateless OpenAI endpoint over the engine's prefix cache (issue #11): clients send
// the whole conversation every turn and still get it computed once; a huge body never stalls others.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type NemotronModel } from '../../lib/model.js';
import { createServer, type NemotronServer } from '../../lib/server/index.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir, waitFor } from '../helpers.js';

describe('server: stateless reuse and large bodies', () => {
  const tmp = tempDir('server-reuse');
  let model: NemotronModel;
  let server: NemotronServer;
  let url: string;
  let client: OpenAI;

  beforeAll(async () => {
    const dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 13, maxPositionEmbeddings: 8192 });
    model = await loadModel(dir, { threads: 2, contextLength: 8192, maxSequences: 4, snapshotInterval: 0 });
    server = await createServer(model, { modelName: 'tiny' }); // default body limit: 8 MiB
    url = await server.listen(0, '127.0.0.1');
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await server.close();
    await model.close();
    tmp.cleanup();
  });

  it('a 5 MB request is refused without holding /health for 50 ms', async () => {
    // The 5 MB client is another process, as in production: this process's event loop is the server's.
    const content = 'All work and no play makes Jack a dull boy. '.repeat(Math.ceil((5 * 1024 * 1024) / 44));
    const file = path.join(tmp.dir, 'big-request.json');
    writeFileSync(file, JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content }], max_tokens: 4 }));
    const script = path.join(tmp.dir, 'big-client.cjs');
    writeFileSync(
      script,
      `const body = require('node:fs').readFileSync(process.argv[2]);
      process.stdin.once('data', () => {
        const t0 = performance.now();
        fetch(process.argv[3], { method: 'POST', headers: { 'content-type': 'application/json' }, body })
          .then(async (r) => ({ status: r.status, code: (await r.json()).error?.code, ms: performance.now() - t0 }))
          .catch((e) => ({ status: 0, code: String(e && e.cause || e), ms: performance.now() - t0 }))
          .then((o) => { process.stdout.write(JSON.stringify(o)); process.exit(0); });
      });
      process.stdout.write('ready|');`,
    );
    const child = spawn(process.execPath, [script, file, `${url}/v1/chat/completions`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    await waitFor(() => out.startsWith('ready|'));
    expect((await fetch(`${url}/health`)).status).toBe(200);
    let worst = 0;
    let polls = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const t0 = performance.now();
        const r = await fetch(`${url}/health`);
        await r.text();
        worst = Math.max(worst, performance.now() - t0);
        polls++;
        await new Promise((res) => setTimeout(res, 2));
      }
    })();
    await new Promise((r) => setTimeout(r, 20));
    child.stdin.write('go\n');
    await exited;
    await new Promise((r) => setTimeout(r, 20));
    polling = false;
    await poller;
    const answer = JSON.parse(out.slice('ready|'.length)) as { status: number; code: string; ms: number };
    console.log(`5 MB request answered ${answer.status} in ${answer.ms.toFixed(0)} ms; /health worst latency meanwhile ${worst.toFixed(1)} ms over ${polls} polls`);
    expect(answer.status).toBe(400);
    expect(answer.code).toBe('context_length_exceeded');
    expect(polls).toBeGreaterThan(3);
    expect(worst).toBeLessThan(50);
  });

  it('turn 2 of a stateless three-message conversation reports cached_tokens >= turn 1 prompt tokens', async () => {
    const turn1 = [{ role: 'user' as const, content: 'Write one line about rivers.' }];
    const r1 = await client.chat.completions.create({ model: 'tiny', messages: turn1, max_tokens: 8, seed: 1, logit_bias: { 12: -100 } });
    const reply = r1.choices[0]!.message.content ?? '';
    const r2 = await client.chat.completions.create({
      model: 'tiny',
      messages: [...turn1, { role: 'assistant', content: reply }, { role: 'user', content: 'Another one.' }],
      max_tokens: 8,
      seed: 1,
    });
    const cached = r2.usage!.prompt_tokens_details!.cached_tokens!;
    console.log(`stateless turn 2 through the server: ${cached} of ${r2.usage!.prompt_tokens} prompt tokens cached; turn 1 had ${r1.usage!.prompt_tokens}`);
    expect(cached).toBeGreaterThanOrEqual(r1.usage!.prompt_tokens);
  });

  it('the same request twice: all but the last prompt token are cached', async () => {
    const req = { model: 'tiny', messages: [{ role: 'system' as const, content: 'Answer in French.' }, { role: 'user' as const, content: 'What is the time?' }], max_tokens: 5, seed: 7 };
    const a = await client.chat.completions.create(req);
    const b = await client.chat.completions.create(req);
    expect(b.usage!.prompt_tokens_details!.cached_tokens).toBe(b.usage!.prompt_tokens - 1);
    expect(b.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
  });
});
