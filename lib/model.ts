/**
 * NemotronModel: a loaded checkpoint and everything a caller does with it. Validation, tokenization and
 * streaming live here; every forward pass runs natively off the JS thread.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

import type { NativeEngine, NativeModelInfo, NativeSampling } from './addon-types.js';
import { ContextOverflowError, InvalidArgumentError, ModelClosedError, ModelLoadError, NemotronError, errorFromCode } from './errors.js';
import { loadNative } from './native.js';
import { IncrementalDecoder, TextTokenizer } from './tokenizer.js';
import * as v from './validate.js';

export interface LoadOptions {
  /** Worker threads for the CPU kernels; default: one per hardware thread. */
  threads?: number;
  /** Tokens per sequence; default: the config's max_position_embeddings. */
  contextLength?: number;
  /** Sequences alive at once (each generate/evaluate call holds one while it runs); default 8. */
  maxSequences?: number;
  /** Tokens per forward pass; longer prompts are prefilled in chunks of this size; default 256. */
  maxBatchTokens?: number;
}

export interface ModelConfig extends Omit<NativeModelInfo['config'], never> {}

export interface ModelInfo {
  /** The checkpoint folder. */
  path: string;
  config: ModelConfig;
  parameterCount: number;
  /** Bytes of the weights as stored (memory-mapped, not copied). */
  weightBytes: number;
  backend: string;
  threads: number;
  contextLength: number;
  maxSequences: number;
  maxBatchTokens: number;
  /** Token ids that end generation (config, generation_config.json and the tokenizer's eos token). */
  eosTokenIds: number[];
}

export interface SamplingOptions {
  /** 0 = greedy. Default 0. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 = off. */
  topK?: number;
  /** Keep the smallest set of tokens holding this much probability, in (0, 1]; 1 = off. */
  topP?: number;
  /** Drop tokens less likely than minP × the most likely one, in [0, 1); 0 = off. */
  minP?: number;
  /** Seed for the random draws; the same seed gives the same tokens. Default: random. */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** Text (tokenized with the checkpoint's BOS policy) or token ids. */
  prompt: string | readonly number[];
  /** Most tokens to generate. Default 256. */
  maxTokens?: number;
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface Timings {
  /** Milliseconds to prefill the prompt (and produce the first token). */
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

export interface GenerateResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  usage: Usage;
  timings: Timings;
}

export type StreamEvent =
  | { type: 'text'; text: string; tokens: number[] }
  | { type: 'done'; result: GenerateResult };

export interface EvaluateOptions {
  /** 'last' (default): logits of the last position; 'all': of every position. */
  logits?: 'last' | 'all';
}

const LOAD_KEYS = ['threads', 'contextLength', 'maxSequences', 'maxBatchTokens'] as const;
const GENERATE_KEYS = ['prompt', 'maxTokens', 'temperature', 'topK', 'topP', 'minP', 'seed', 'signal'] as const;

/** Re-homes a native rejection as the typed error, keeping the caller's stack. */
function rethrow(err: unknown, stack: Error): never {
  if (err instanceof NemotronError) throw err;
  const e = err as { code?: string; message?: string };
  const typed = errorFromCode(e.code ?? 'ERR_INTERNAL', e.message ?? String(err), err);
  typed.stack = `${typed.name}: ${typed.message}\n${(stack.stack ?? '').split('\n').slice(1).join('\n')}`;
  throw typed;
}

function readEosIds(dir: string, info: NativeModelInfo, tokenizer: TextTokenizer | null): number[] {
  const ids = new Set<number>(info.config.eosTokenIds);
  const gen = path.join(dir, 'generation_config.json');
  if (existsSync(gen)) {
    try {
      const g = JSON.parse(readFileSync(gen, 'utf8')) as { eos_token_id?: number | number[] };
      for (const id of [g.eos_token_id ?? []].flat()) if (Number.isInteger(id)) ids.add(id);
    } catch {
      // generation_config.json is advisory; a broken one must not block loading
    }
  }
  const eosToken = tokenizer?.config.eos_token;
  const eosName = typeof eosToken === 'string' ? eosToken : (eosToken as { content?: string } | undefined)?.content;
  if (tokenizer && eosName) {
    const id = tokenizer.tokenId(eosName);
    if (id !== undefined) ids.add(id);
  }
  return [...ids].filter((id) => id >= 0 && id < info.config.vocabSize).sort((a, b) => a - b);
}

export class NemotronModel {
  readonly info: ModelInfo;
  private readonly engine: NativeEngine;
  private readonly tokenizer: TextTokenizer | null;
  private readonly eos: Set<number>;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly closing = new AbortController();
  private closed = false;

  private constructor(dir: string, engine: NativeEngine, tokenizer: TextTokenizer | null) {
    this.engine = engine;
    this.tokenizer = tokenizer;
    const ni = engine.info();
    const eosTokenIds = readEosIds(dir, ni, tokenizer);
    this.eos = new Set(eosTokenIds);
    this.info = Object.freeze({ path: dir, ...ni, eosTokenIds });
  }

  /** Loads a Hugging Face checkpoint folder (config.json, safetensors, tokenizer files). */
  static async load(modelPath: string, options: LoadOptions = {}): Promise<NemotronModel> {
    const stack = new Error();
    if (typeof modelPath !== 'string' || modelPath.length === 0) throw v.invalid('path', 'a checkpoint folder path', modelPath);
    v.assertObject('options', options);
    v.assertKnownKeys('options', options, LOAD_KEYS);
    const threads = v.optionalInteger('options.threads', options.threads, 0, 1024);
    const contextLength = v.optionalInteger('options.contextLength', options.contextLength, 1);
    const maxSequences = v.optionalInteger('options.maxSequences', options.maxSequences, 1, 4096);
    const maxBatchTokens = v.optionalInteger('options.maxBatchTokens', options.maxBatchTokens, 1, 65536);
    const dir = path.resolve(modelPath);
    if (!existsSync(dir)) throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `no checkpoint at ${dir}: the path does not exist`);
    if (!statSync(dir).isDirectory()) {
      throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `${dir} is not a folder: expected a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json)`);
    }
    const tokenizer = TextTokenizer.fromDir(dir);
    let engine: NativeEngine;
    try {
      engine = await loadNative().loadEngine(dir, {
        threads: threads ?? 0,
        contextLength: contextLength ?? 0,
        maxSequences: maxSequences ?? 8,
        maxBatchTokens: maxBatchTokens ?? 256,
      });
    } catch (err) {
      rethrow(err, stack);
    }
    return new NemotronModel(dir, engine, tokenizer);
  }

  /** Text to token ids. `addSpecialTokens` (default true) applies the checkpoint's BOS policy. */
  tokenize(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw v.invalid('text', 'a string', text);
    return this.requireTokenizer().encode(text, options.addSpecialTokens ?? true);
  }

  /** Token ids to text. */
  detokenize(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const checked = v.tokenIds('ids', ids, this.info.config.vocabSize);
    return this.requireTokenizer().decode(Array.from(checked), options.skipSpecialTokens ?? false);
  }

  /** Runs token ids through a fresh sequence and returns logits: [vocab] or [positions × vocab], row-major. */
  async evaluate(ids: readonly number[], options: EvaluateOptions = {}): Promise<Float32Array> {
    const stack = new Error();
    this.assertOpen();
    v.assertObject('options', options);
    v.assertKnownKeys('options', options, ['logits']);
    if (options.logits !== undefined && options.logits !== 'last' && options.logits !== 'all') {
      throw v.invalid('options.logits', "'last' or 'all'", options.logits);
    }
    const tokens = v.tokenIds('ids', ids, this.info.config.vocabSize);
    this.assertFits(tokens.length);
    return this.track(async () => {
      const seq = this.createSequence(stack);
      try {
        return await this.engine.evaluate(seq, tokens, options.logits === 'all');
      } catch (err) {
        rethrow(err, stack);
      } finally {
        this.engine.freeSequence(seq);
      }
    });
  }

  /** Generates a completion and resolves with all of it. */
  async generate(options: GenerateOptions): Promise<GenerateResult> {
    let result: GenerateResult | undefined;
    for await (const ev of this.stream(options)) if (ev.type === 'done') result = ev.result;
    return result!;
  }

  /**
   * Generates a completion as an async iterable of text pieces, ending with a `done` event carrying the
   * whole result. The next token is computed only when the consumer asks for more (backpressure);
   * `break` or the signal stops generation and frees the sequence.
   */
  stream(options: GenerateOptions): AsyncGenerator<StreamEvent, void, undefined> {
    const stack = new Error();
    this.assertOpen();
    const req = this.parseGenerate(options);
    return this.runStream(req, stack);
  }

  /** Frees the engine. Running generations end with finishReason 'abort'; further calls throw. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    await Promise.allSettled([...this.inflight]);
    this.engine.close();
  }

  // ---- internals -----------------------------------------------------------------------------------

  private parseGenerate(options: GenerateOptions) {
    v.assertObject('options', options);
    v.assertKnownKeys('options', options as unknown as Record<string, unknown>, GENERATE_KEYS);
    const maxTokens = v.optionalInteger('options.maxTokens', options.maxTokens, 1) ?? 256;
    const temperature = v.optionalNumber('options.temperature', options.temperature, (x) => x >= 0, 'a number >= 0') ?? 0;
    const topK = v.optionalInteger('options.topK', options.topK, 0) ?? 0;
    const topP = v.optionalNumber('options.topP', options.topP, (x) => x > 0 && x <= 1, 'a number in (0, 1]') ?? 1;
    const minP = v.optionalNumber('options.minP', options.minP, (x) => x >= 0 && x < 1, 'a number in [0, 1)') ?? 0;
    const seed = v.optionalInteger('options.seed', options.seed, 0) ?? Math.floor(Math.random() * 2 ** 32);
    const signal = v.optionalSignal('options.signal', options.signal);
    let prompt: Int32Array;
    if (typeof options.prompt === 'string') {
      if (options.prompt.length === 0) throw new InvalidArgumentError('ERR_EMPTY_PROMPT', 'options.prompt is empty: give some text or token ids');
      prompt = Int32Array.from(this.tokenize(options.prompt));
    } else {
      prompt = v.tokenIds('options.prompt', options.prompt, this.info.config.vocabSize);
    }
    this.assertFits(prompt.length);
    const sampling: NativeSampling = { temperature, topK, topP, minP, seed };
    return { prompt, maxTokens, sampling, signal };
  }

  private async *runStream(req: ReturnType<NemotronModel['parseGenerate']>, stack: Error): AsyncGenerator<StreamEvent, void, undefined> {
    const { prompt, sampling, signal } = req;
    // Never generate past the context: the prompt plus every fed-back token must fit.
    const maxTokens = Math.min(req.maxTokens, this.info.contextLength - prompt.length + 1);
    const decoder = this.tokenizer ? new IncrementalDecoder(this.tokenizer) : null;
    const tokens: number[] = [];
    let text = '';
    let finishReason: FinishReason = 'length';
    let done!: () => void;
    const tracked = new Promise<void>((resolve) => (done = resolve));
    this.inflight.add(tracked);
    const seq = this.createSequence(stack);
    const t0 = performance.now();
    let tFirst = t0;
    try {
      let input: Int32Array = prompt;
      for (let step = 0; step < maxTokens; step++) {
        if (signal?.aborted || this.closing.signal.aborted) {
          finishReason = 'abort';
          break;
        }
        let token: number;
        try {
          token = await this.engine.evaluateAndSample(seq, input, sampling, step);
        } catch (err) {
          rethrow(err, stack);
        }
        if (step === 0) tFirst = performance.now();
        if (this.eos.has(token)) {
          finishReason = 'stop';
          break;
        }
        tokens.push(token);
        const piece = decoder ? decoder.push(token) : '';
        text += piece;
        if (piece.length > 0 || !decoder) yield { type: 'text', text: piece, tokens: [token] };
        input = Int32Array.of(token);
      }
      const tail = decoder ? decoder.flush() : '';
      if (tail) {
        text += tail;
        yield { type: 'text', text: tail, tokens: [] };
      }
      const tEnd = performance.now();
      const prefillMs = tFirst - t0;
      const decodeMs = tEnd - tFirst;
      const decoded = Math.max(tokens.length - 1, 0);
      yield {
        type: 'done',
        result: {
          text,
          tokens,
          finishReason,
          usage: { promptTokens: prompt.length, completionTokens: tokens.length },
          timings: {
            prefillMs,
            decodeMs,
            prefillTokensPerSecond: prefillMs > 0 ? (prompt.length * 1000) / prefillMs : 0,
            decodeTokensPerSecond: decodeMs > 0 ? (decoded * 1000) / decodeMs : 0,
          },
        },
      };
    } finally {
      this.engine.freeSequence(seq);
      this.inflight.delete(tracked);
      done();
    }
  }

  private createSequence(stack: Error): number {
    try {
      return this.engine.createSequence();
    } catch (err) {
      rethrow(err, stack);
    }
  }

  private async track<T>(fn: () => Promise<T>): Promise<T> {
    const p = fn();
    this.inflight.add(p);
    try {
      return await p;
    } finally {
      this.inflight.delete(p);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new ModelClosedError();
  }

  private assertFits(n: number): void {
    if (n > this.info.contextLength) {
      throw new ContextOverflowError(`the prompt has ${n} tokens but the context length is ${this.info.contextLength}`);
    }
  }

  private requireTokenizer(): TextTokenizer {
    this.assertOpen();
    if (!this.tokenizer) {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `the checkpoint at ${this.info.path} has no tokenizer.json: pass token ids instead of text`);
    }
    return this.tokenizer;
  }
}

/** Loads a Hugging Face checkpoint folder. See LoadOptions. */
export function loadModel(modelPath: string, options?: LoadOptions): Promise<NemotronModel> {
  return NemotronModel.load(modelPath, options);
}
