/**
 * loadModel()'s options: what each one means, and their check (a wrong type or value is an
 * InvalidArgumentError before anything is read from disk).
 */
import os from 'node:os';

import type { HubOptions } from '../hub/index.js';
import type { LoadProgressCallback } from '../load-progress.js';
import { DEFAULT_CACHE_BYTES } from '../memory.js';
import * as v from '../validate.js';

export interface LoadOptions {
  /** Worker threads for the CPU kernels; default: one per hardware thread. */
  threads?: number;
  /** Tokens per sequence; default: the config's max_position_embeddings. */
  contextLength?: number;
  /** Sequences alive at once (each running request holds one); further requests wait in FIFO order. Default 8. */
  maxSequences?: number;
  /** Prompt tokens per forward pass: longer prompts are prefilled in chunks of this size. Default 256. */
  maxBatchTokens?: number;
  /** KV cache storage: 'f16' (default, half the memory) or 'f32' (exact). */
  kvDtype?: 'f16' | 'f32';
  /** Bytes the prefix/snapshot cache may hold (Mamba state copies and the KV blocks only it keeps). Default 1 GiB. */
  cacheBytes?: number;
  /** Snapshot long prompts every this many tokens, so a later prompt sharing a long prefix resumes there. Default 2048; 0 = off. */
  snapshotInterval?: number;
  /**
   * Cancel a stream whose consumer has not asked for the next event for this many milliseconds, with
   * finishReason 'abort' and an IdleTimeoutError: a paused or forgotten stream holds a sequence slot that
   * queued requests wait for. Default 60000 (a minute: far beyond any network stall of a live client,
   * short enough that a leaked iterator frees its slot soon); 0 = never.
   */
  idleTimeoutMs?: number;
  /**
   * After a chat request ends, compute its reply as the next turn will render it (the template drops the
   * reasoning) and cache that state, so the conversation's next request, stateless or not, computes only
   * its new message. Costs one prefill of the reply per turn, off the caller's path. Default true.
   */
  prepareNextTurn?: boolean;
  /** Refuse to load when the memory plan (model.info.memory) exceeds this many bytes. Default: the machine's total memory. */
  memoryLimit?: number;
  /** 'cpu' (default), 'cuda' (a typed error without a usable GPU and CUDA build), or 'auto' (the GPU when there is one). */
  device?: 'cpu' | 'cuda' | 'auto';
  /**
   * The GPU self-check before a CUDA model serves (lib/selfcheck.ts: the built-in tiny model on the device
   * against the CPU backend, under 2 s): 'run' (default) every load, 'cached' trusts a pass cached for this
   * binary, device and driver in the cache folder, 'off' never. A failure is a SelfCheckError with
   * device: 'cuda' and a fallback to the CPU (one log line) with 'auto'. No effect on the CPU.
   */
  selfCheck?: 'run' | 'cached' | 'off';
  /**
   * Matrix-product precision. 'exact': activations stay f32 on CPU (log-probs within ~1e-5 of a float64
   * reference); on CUDA each activation is split into two bf16 terms. 'fast': activations are rounded to
   * the weights' dot-product type where the hardware has one, as llama.cpp does (bf16 for BF16 weights on
   * CPUs with AVX-512 BF16, 8-bit blocks for quantized weights; bf16 on CUDA): faster prompts and
   * batches, log-probs within ~1e-2. Both are batch invariant. Default: per weight type
   * (lib/model/precision.ts defaultPrecision): 'fast' for a GGUF whose matrices are mostly
   * block-quantized (Q8_0, Q4_K, Q5_0, ...), where the 8-bit activation blocks add an error of the same
   * order as or below the weights' own quantization error (llama.cpp's default too); 'exact' for float
   * (BF16, F16, F32) and FP8 weights. model.info.precision says which was used; `precision: 'exact'`
   * always gives exactness.
   */
  precision?: 'exact' | 'fast';
  /** Progress of the load, phase by phase ('download' for hf: references, 'plan', 'tokenizer', 'load'): see LoadProgress. */
  onProgress?: LoadProgressCallback;
  /** For `hf:owner/name` references: revision, file, cache folder, endpoint, token, offline (see HubOptions). */
  hub?: HubOptions;
  /**
   * Scan every weight for NaN and Inf before loading, on the thread pool; the first tensor holding one is
   * named in an ERR_INVALID_CHECKPOINT error. Reads every weight byte once (seconds for a 9B checkpoint),
   * so it is off by default. The CLI's `inspect --check` runs it.
   */
  checkTensors?: boolean;
  /**
   * Allow a contextLength above the config's max_position_embeddings (the context the model was trained
   * for). Without it such a contextLength is refused: quality past the trained context is not known.
   */
  allowContextBeyondTraining?: boolean;
  /**
   * Where the CPU engine keeps the weights. 'mmap' (default): in the memory-mapped files, as stored
   * (shared with the page cache, nothing copied; huge pages and read-ahead are asked for where the
   * kernel allows). 'memory': copied at load, in parallel, into anonymous memory backed by 2 MiB
   * transparent huge pages (the plan counts the copy: model.info.memory.weightsCopy): faster decode,
   * load costs one copy of the weights. 'auto': 'memory' when the load with the copy stays within 3/4
   * of memoryLimit (at most the machine's memory), else 'mmap' (memory.ts chooseWeightsPlacement).
   * Results are bitwise the same either way. Ignored by the CUDA backend.
   */
  weights?: 'mmap' | 'memory' | 'auto';
}

/** Every key LoadOptions has (unknown keys are refused). */
export const LOAD_KEYS = ['threads', 'contextLength', 'maxSequences', 'maxBatchTokens', 'kvDtype', 'cacheBytes', 'snapshotInterval', 'idleTimeoutMs', 'prepareNextTurn', 'memoryLimit', 'device', 'selfCheck', 'precision', 'weights', 'onProgress', 'hub', 'checkTensors', 'allowContextBeyondTraining'] as const;

/** LoadOptions checked, with their defaults filled in (undefined: decided by the plan or the engine). */
export interface CheckedLoadOptions {
  threads: number | undefined;
  contextLength: number | undefined;
  maxSequences: number | undefined;
  maxBatchTokens: number | undefined;
  kvDtype: 'f16' | 'f32';
  /** Undefined: per weight type, decided by planLoad() (defaultPrecision). */
  precision: 'exact' | 'fast' | undefined;
  cacheBytes: number;
  snapshotInterval: number;
  idleTimeoutMs: number;
  prepareNextTurn: boolean;
  memoryLimit: number;
  weights: 'mmap' | 'memory' | 'auto';
  device: 'cpu' | 'cuda' | 'auto';
  selfCheck: 'run' | 'cached' | 'off';
  checkTensors: boolean;
  allowContextBeyondTraining: boolean;
}

/** Checks every option's type and range; throws an InvalidArgumentError naming the first bad one. */
export function checkLoadOptions(options: LoadOptions): CheckedLoadOptions {
  v.assertObject('options', options);
  v.assertKnownKeys('options', options, LOAD_KEYS);
  const threads = v.optionalInteger('options.threads', options.threads, 0, 1024);
  const contextLength = v.optionalInteger('options.contextLength', options.contextLength, 1);
  const maxSequences = v.optionalInteger('options.maxSequences', options.maxSequences, 1, 4096);
  const maxBatchTokens = v.optionalInteger('options.maxBatchTokens', options.maxBatchTokens, 1, 65536);
  const kvDtype: unknown = options.kvDtype ?? 'f16';
  if (kvDtype !== 'f16' && kvDtype !== 'f32') throw v.invalid('options.kvDtype', "'f16' or 'f32'", kvDtype);
  const precision: unknown = options.precision;
  if (precision !== undefined && precision !== 'exact' && precision !== 'fast') throw v.invalid('options.precision', "'exact' or 'fast'", precision);
  const cacheBytes = v.optionalInteger('options.cacheBytes', options.cacheBytes, 0) ?? DEFAULT_CACHE_BYTES;
  const snapshotInterval = v.optionalInteger('options.snapshotInterval', options.snapshotInterval, 0) ?? 2048;
  const idleTimeoutMs = v.optionalInteger('options.idleTimeoutMs', options.idleTimeoutMs, 0) ?? 60_000;
  if (options.prepareNextTurn !== undefined && typeof options.prepareNextTurn !== 'boolean') throw v.invalid('options.prepareNextTurn', 'true or false', options.prepareNextTurn);
  const memoryLimit = v.optionalInteger('options.memoryLimit', options.memoryLimit, 1) ?? os.totalmem();
  const weights: unknown = options.weights ?? 'mmap';
  if (weights !== 'mmap' && weights !== 'memory' && weights !== 'auto') throw v.invalid('options.weights', "'mmap', 'memory' or 'auto'", weights);
  const device: unknown = options.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda' && device !== 'auto') throw v.invalid('options.device', "'cpu', 'cuda' or 'auto'", device);
  const selfCheck: unknown = options.selfCheck ?? 'run';
  if (selfCheck !== 'run' && selfCheck !== 'cached' && selfCheck !== 'off') throw v.invalid('options.selfCheck', "'run', 'cached' or 'off'", selfCheck);
  for (const key of ['checkTensors', 'allowContextBeyondTraining'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean') throw v.invalid(`options.${key}`, 'true or false', options[key]);
  }
  return {
    threads, contextLength, maxSequences, maxBatchTokens, kvDtype, precision, cacheBytes, snapshotInterval, idleTimeoutMs,
    prepareNextTurn: options.prepareNextTurn ?? true, memoryLimit, weights, device, selfCheck,
    checkTensors: options.checkTensors === true, allowContextBeyondTraining: options.allowContextBeyondTraining === true,
  };
}
