/**
 * Load planning: what a checkpoint will need, decided from its config before anything is allocated.
 * The context length (the model's own up to a cap), the memory plan (lib/memory.ts) checked against
 * memoryLimit, where the CPU weights go (weights: 'auto') and the matrix-product precision when none is
 * given (per weight type: precision.ts). A config that cannot be read leaves the
 * plan to planFromEngine(), after the native loader has said what is wrong with it or read it.
 */
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { NativeConfig } from '../addon-types.js';
import { InvalidArgumentError, ModelLoadError } from '../errors.js';
import { ggufConfigForPlan, readGgufMetadata, type GgufMetadata } from '../gguf/reader.js';
import { DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_SEQUENCES, checkPlanFits, chooseWeightsPlacement, planMemory, type MemoryPlan } from '../memory.js';
import type { CheckedLoadOptions } from './load-options.js';
import { defaultPrecision } from './precision.js';

/** Default context when none is given: the model's own, up to this (a 128k plan is opt-in). */
const DEFAULT_CONTEXT_CAP = 8192;

/** config.json as JSON.parse can read it: HF writes bare Infinity/NaN, which only planning reads. */
function readConfigForPlan(dir: string): Record<string, unknown> | null {
  try {
    const text = readFileSync(path.join(dir, 'config.json'), 'utf8').replace(/(?<=[:,\[]\s*)-?(?:Infinity|NaN)\b/g, '0');
    const c = JSON.parse(text) as unknown;
    return typeof c === 'object' && c !== null && !Array.isArray(c) ? (c as Record<string, unknown>) : null;
  } catch {
    return null; // the native loader reports what is wrong with it
  }
}

/** Bytes of the weight files (what gets memory-mapped). */
function weightFileBytes(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir)) if (f.endsWith('.safetensors')) total += statSync(path.join(dir, f)).size;
  return total;
}

/** What planLoad() decided. */
export interface LoadPlan {
  /** The GGUF file's metadata, when the checkpoint is a .gguf file. */
  gguf: GgufMetadata | undefined;
  /** config.json (or the GGUF metadata as one), null when it cannot be read. */
  rawConfig: Record<string, unknown> | null;
  contextLength: number;
  maxSequences: number;
  maxBatchTokens: number;
  /** Undefined when the config could not be planned from (planFromEngine() plans it after the load). */
  memory: MemoryPlan | undefined;
  weights: 'mmap' | 'memory';
  /** options.precision, or the checkpoint's default (defaultPrecision) when not given. */
  precision: 'exact' | 'fast';
}

/** Checks that `dir` is a checkpoint, reads its config and plans the load; throws when the plan does not fit. */
export function planLoad(dir: string, o: CheckedLoadOptions): LoadPlan {
  if (!existsSync(dir)) throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `no checkpoint at ${dir}: the path does not exist`);
  // A llama.cpp .gguf file (nemotron_h): config, tokenizer and memory plan come from its metadata.
  const gguf = dir.endsWith('.gguf') && statSync(dir).isFile() ? readGgufMetadata(dir) : undefined;
  if (!gguf && !statSync(dir).isDirectory()) {
    throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `${dir} is not a folder: expected a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json) or a .gguf file`);
  }
  const rawConfig = gguf ? ggufConfigForPlan(gguf) : readConfigForPlan(dir);
  const maxPos = typeof rawConfig?.max_position_embeddings === 'number' ? rawConfig.max_position_embeddings : DEFAULT_CONTEXT_CAP;
  const contextLength = o.contextLength ?? Math.min(maxPos, DEFAULT_CONTEXT_CAP);
  if (o.contextLength !== undefined && typeof rawConfig?.max_position_embeddings === 'number' && o.contextLength > maxPos && !o.allowContextBeyondTraining) {
    throw new InvalidArgumentError(
      'ERR_INVALID_ARGUMENT',
      `options.contextLength is ${o.contextLength}, above the model's max_position_embeddings (${maxPos}), the context it was trained for; pass allowContextBeyondTraining: true to load it anyway`,
    );
  }
  const shape = { contextLength, maxSequences: o.maxSequences ?? DEFAULT_MAX_SEQUENCES, maxBatchTokens: o.maxBatchTokens ?? DEFAULT_MAX_BATCH_TOKENS, kvDtype: o.kvDtype, cacheBytes: o.cacheBytes };
  let memory: MemoryPlan | undefined;
  // weights: 'auto' decides on the plan with the copy; the CUDA backend keeps no host copy ('mmap').
  let weights: 'mmap' | 'memory' = o.weights === 'memory' && o.device !== 'cuda' ? 'memory' : 'mmap';
  if (rawConfig) {
    try {
      // Weights as stored: FP8 (ModelOpt E4M3) matrices are read in place, 1 byte per parameter.
      const weightBytes = gguf ? gguf.fileSize - gguf.dataOffset : weightFileBytes(dir);
      const stored = { weightBytes };
      if (o.weights === 'auto' && o.device === 'cpu') {
        weights = chooseWeightsPlacement(planMemory(rawConfig, { ...shape, ...stored, weights: 'memory' }), Math.min(o.memoryLimit, os.totalmem()));
      }
      memory = planMemory(rawConfig, { ...shape, ...stored, weights });
    } catch {
      memory = undefined; // a broken config: the native loader says precisely what is wrong
    }
  }
  if (memory) checkPlanFits(memory, o.memoryLimit);
  const precision = o.precision ?? defaultPrecision(gguf?.tensors);
  return { gguf, rawConfig, contextLength, maxSequences: shape.maxSequences, maxBatchTokens: shape.maxBatchTokens, memory, weights, precision };
}

/** The plan of a checkpoint whose config only the native loader could read; throws when it does not fit. */
export function planFromEngine(config: NativeConfig, weightBytes: number, plan: LoadPlan, o: CheckedLoadOptions): MemoryPlan {
  const memory = planMemory(config, {
    contextLength: plan.contextLength, maxSequences: plan.maxSequences, maxBatchTokens: plan.maxBatchTokens, kvDtype: o.kvDtype, cacheBytes: o.cacheBytes, weightBytes, weights: plan.weights,
  });
  checkPlanFits(memory, o.memoryLimit);
  return memory;
}
