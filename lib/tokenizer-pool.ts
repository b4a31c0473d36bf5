/**
 * Tokenization off the event loop for large inputs. Tokenizing a few hundred kilobytes of text takes
 * the JS thread tens to hundreds of milliseconds, during which no other request of the process is
 * served; inputs above THRESHOLD go to one worker thread per model instead (started on first use, with
 * its own copy of the tokenizer, and unref'd so it never keeps a process alive). Small inputs stay
 * inline: a worker round trip costs more than tokenizing them.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

import { InternalError } from './errors.js';
import { moduleUrl } from './module-url.js';
import type { TextTokenizer } from './tokenizer.js';

// The worker is CommonJS source evaluated in the thread: no separate file to find in dist/ or lib/.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { Tokenizer } = require(workerData.tokenizersPath);
const tok = new Tokenizer(workerData.tokenizerJson, workerData.tokenizerConfig);
parentPort.on('message', ({ id, text, addSpecialTokens }) => {
  try {
    const ids = tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    parentPort.postMessage({ id, ids: Int32Array.from(ids) });
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  }
});
`;

export class TokenizerPool {
  /** UTF-16 code units above which text is tokenized in the worker (64 KiB of ASCII). */
  static readonly THRESHOLD = 64 * 1024;
  private worker: Worker | null = null;
  private readonly pending = new Map<number, { resolve: (ids: number[]) => void; reject: (err: Error) => void }>();
  private nextId = 1;

  constructor(private readonly tokenizer: TextTokenizer) {}

  encode(text: string, addSpecialTokens: boolean): Promise<number[]> {
    if (text.length <= TokenizerPool.THRESHOLD) return Promise.resolve(this.tokenizer.encode(text, addSpecialTokens));
    const worker = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, text, addSpecialTokens });
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const files = this.tokenizer.files;
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        tokenizersPath: createRequire(moduleUrl).resolve('@huggingface/tokenizers'),
        tokenizerJson: files.tokenizerJson,
        tokenizerConfig: files.tokenizerConfig,
      },
    });
    worker.unref();
    worker.on('message', (m: { id: number; ids?: Int32Array; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) worker.unref();
      if (m.ids) p.resolve(Array.from(m.ids));
      else p.reject(new InternalError(`tokenization failed in the worker thread: ${m.error}`));
    });
    worker.on('error', (err) => this.failAll(err));
    worker.on('exit', () => {
      if (this.worker === worker) this.worker = null;
      this.failAll(new InternalError('the tokenizer worker thread exited'));
    });
    this.worker = worker;
    return worker;
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
