/**
 * JSON request bodies, parsed where they cannot stall other requests. A body under LARGE_BODY_BYTES is
 * parsed inline by fastify's own parser (prototype-poisoning checks included). A larger one is parsed
 * in a worker thread, which also adds up the bytes of its prompt text: a body whose text cannot fit the
 * model's context (more bytes than contextLength x the longest token) is refused there, so the server
 * thread never builds a multi-megabyte string, never scans it, and never pays for its garbage
 * collection. What fits comes back as the parsed object.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

import type { FastifyInstance, FastifyRequest } from 'fastify';

import { moduleUrl } from '../module-url.js';
import { HttpError } from './protocol.js';

/** Bodies at least this large are parsed off the event loop. */
export const LARGE_BODY_BYTES = 256 * 1024;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const sjson = require(workerData.secureJsonParse);
const text = (v) => (typeof v === 'string' ? Buffer.byteLength(v) : 0);
function promptBytes(body) {
  let n = 0;
  if (body && Array.isArray(body.messages)) {
    for (const m of body.messages) {
      if (!m) continue;
      n += text(m.content);
      if (Array.isArray(m.content)) for (const p of m.content) n += text(p && p.text);
    }
  }
  if (body) {
    if (Array.isArray(body.prompt)) for (const p of body.prompt) n += text(p);
    else n += text(body.prompt);
  }
  return n;
}
parentPort.on('message', ({ id, body, limit }) => {
  let value;
  try {
    value = sjson.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'), { protoAction: 'error', constructorAction: 'error' });
  } catch (err) {
    parentPort.postMessage({ id, invalid: String(err && err.message || err) });
    return;
  }
  const bytes = promptBytes(value);
  if (limit > 0 && bytes > limit) parentPort.postMessage({ id, tooLarge: bytes, field: Array.isArray(value.messages) ? 'messages' : 'prompt' });
  else parentPort.postMessage({ id, value });
});
`;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/**
 * Replaces the app's JSON parser. `promptByteLimit` is the most prompt text (UTF-8 bytes) that could
 * still fit the context (0: no early refusal); `contextLength` words the refusal.
 */
export function registerJsonParser(app: FastifyInstance, options: { bodyLimit: number; promptByteLimit: number; contextLength: number }): { close(): Promise<void> } {
  const inline = app.getDefaultJsonParser('error', 'error');
  let worker: Worker | null = null;
  const pending = new Map<number, Pending>();
  let next = 1;

  const start = (): Worker => {
    if (worker) return worker;
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { secureJsonParse: createRequire(moduleUrl).resolve('secure-json-parse') } });
    w.unref();
    w.on('message', (m: { id: number; value?: unknown; invalid?: string; tooLarge?: number; field?: string }) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (pending.size === 0) w.unref();
      if (m.invalid !== undefined) p.reject(Object.assign(new Error(m.invalid), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' }));
      else if (m.tooLarge !== undefined) {
        p.reject(new HttpError(400, `${m.field} has ${m.tooLarge} bytes of text: more tokens than the context length ${options.contextLength} can hold`, m.field ?? null, 'context_length_exceeded'));
      } else p.resolve(m.value);
    });
    const fail = (err: Error) => {
      for (const p of pending.values()) p.reject(err);
      pending.clear();
      if (worker === w) worker = null;
    };
    w.on('error', fail);
    w.on('exit', () => fail(new Error('the JSON parser thread exited')));
    worker = w;
    return w;
  };

  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: options.bodyLimit }, (request: FastifyRequest, body: Buffer, done) => {
    if (body.length < LARGE_BODY_BYTES) {
      inline(request, body.toString('utf8'), done);
      return;
    }
    const w = start();
    const id = next++;
    pending.set(id, { resolve: (v) => done(null, v), reject: (e) => done(e, undefined) });
    if (pending.size === 1) w.ref();
    // A whole-buffer body moves to the thread without a copy.
    const whole = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
    const bytes = whole ? new Uint8Array(body.buffer) : Uint8Array.from(body);
    w.postMessage({ id, body: bytes, limit: options.promptByteLimit }, [bytes.buffer as ArrayBuffer]);
  });

  return {
    async close() {
      const w = worker;
      worker = null;
      if (w) await w.terminate();
    },
  };
}
