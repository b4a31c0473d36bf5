// Issue #13 item 8: the server against clients that misbehave at the HTTP level. A large body announced
// with `Expect: 100-continue` (curl's default above 1 MB) gets a 413 instead of a 100; a client that stops
// sending (headers, body, or nothing at all on a kept-alive connection) is disconnected after the
// configured timeout; many concurrent requests add no listener warnings.
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type NemotronModel } from '../../lib/model.js';
import { createServer, type NemotronServer } from '../../lib/server/index.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir('server-limits');
let model: NemotronModel;
let server: NemotronServer;
let port: number;

/** Opens a connection, writes `data`, and resolves with everything read until the server closes it. */
function exchange(data: string, opts: { keepOpenMs?: number } = {}): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect(port, '127.0.0.1');
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text += d));
    s.on('error', () => {}); // a reset after the answer is fine
    s.on('close', () => resolve({ text, closedAfterMs: performance.now() - t0 }));
    s.on('connect', () => s.write(data));
    if (opts.keepOpenMs !== undefined) setTimeout(() => { s.destroy(); reject(new Error(`still open after ${opts.keepOpenMs} ms: ${text.slice(0, 200)}`)); }, opts.keepOpenMs);
  });
}

beforeAll(async () => {
  const dir = path.join(tmp.dir, 'tiny');
  await makeTinyModel(dir, { seed: 3 });
  model = await loadModel(dir, { threads: 1, maxSequences: 4 });
  server = await createServer(model, { maxBodyBytes: 64 * 1024, maxConcurrent: 40, headersTimeoutMs: 400, bodyTimeoutMs: 700, idleTimeoutMs: 300 });
  port = Number(new URL(await server.listen(0, '127.0.0.1')).port);
});
afterAll(async () => {
  await server?.close();
  await model?.close();
  tmp.cleanup();
});

describe('request limits at the HTTP level', () => {
  it('Expect: 100-continue with a body over the limit: 413 at once, no 100, the connection closes', async () => {
    const head = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${50 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n`;
    const { text } = await exchange(head, { keepOpenMs: 5000 });
    expect(text).not.toMatch(/100 Continue/);
    expect(text).toMatch(/^HTTP\/1\.1 413/);
    expect(text).toMatch(/"code":"request_too_large"|too large/);
  });

  it('Expect: 100-continue with a body under the limit still gets its 100 and its answer', async () => {
    const body = JSON.stringify({ model: 'tiny', prompt: 'hi', max_tokens: 2 });
    const res = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let text = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => {
        text += d;
        if (text.includes('100 Continue') && !text.includes('sent')) {
          text += '(sent)';
          s.write(body);
        }
        if (/\r\n\r\n\{.*\}$/s.test(text)) s.end();
      });
      s.on('close', () => resolve(text));
      s.on('connect', () => s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`));
    });
    expect(res).toMatch(/HTTP\/1\.1 100 Continue/);
    expect(res).toMatch(/HTTP\/1\.1 200 OK/);
  });

  it('headers that never end: disconnected after the headers timeout', async () => {
    const { closedAfterMs, text } = await exchange('POST /v1/completions HTTP/1.1\r\nHost: x\r\n', { keepOpenMs: 5000 });
    expect(closedAfterMs).toBeLessThan(3000);
    expect(text === '' || /^HTTP\/1\.1 408/.test(text)).toBe(true);
  });

  it('headers and part of the body: disconnected after the body timeout', async () => {
    const { closedAfterMs } = await exchange('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":', { keepOpenMs: 5000 });
    expect(closedAfterMs).toBeLessThan(3500);
  });

  it('an idle kept-alive connection is closed after the idle timeout', async () => {
    const { closedAfterMs, text } = await exchange('GET /health HTTP/1.1\r\nHost: x\r\n\r\n', { keepOpenMs: 5000 });
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(closedAfterMs).toBeLessThan(3000);
  });

  it('a connection that sends nothing is closed too', async () => {
    const { closedAfterMs } = await exchange('', { keepOpenMs: 5000 });
    expect(closedAfterMs).toBeLessThan(3000);
  });

  it('timeouts are validated', async () => {
    await expect(createServer(model, { bodyTimeoutMs: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/bodyTimeoutMs/) });
  });
});

describe('no listener warnings under concurrency', () => {
  it('20 concurrent requests, through the server and straight to the model', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      await Promise.all(Array.from({ length: 20 }, () =>
        fetch(`http://127.0.0.1:${port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'hi', max_tokens: 3 }) }).then((r) => r.text()),
      ));
      await Promise.all(Array.from({ length: 20 }, () => model.generate({ prompt: 'hi', maxTokens: 3 })));
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });
});
