#!/usr/bin/env node
/**
 * The nemotron-node command line. `generate` streams a completion to stdout; with no --model it uses
 * the built-in tiny model (random weights) so it runs anywhere.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import { Command, InvalidArgumentError as CliArgumentError } from 'commander';

import type { ChatSession } from './chat/session.js';
import { defaultModelPath } from './default-model.js';
import { ModelLoadError, NemotronError } from './errors.js';
import { activeParameterCount, formatBytes, planMemory, resolveConfig, type PlanOptions } from './memory.js';
import { loadModel, type LoadOptions, type NemotronModel } from './model.js';
import { DEFAULT_TIMEOUTS } from './server/limits.js';
import { makeTinyModel } from './tiny-model/index.js';
import { isHubSpec, parseHubSpec, pullModel } from './hub/index.js';
import { progressDisplay } from './progress-display.js';
import { packageVersion } from './version.js';

function int(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n)) throw new CliArgumentError(`${name} must be an integer, got "${value}"`);
    return n;
  };
}

function num(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new CliArgumentError(`${name} must be a number, got "${value}"`);
    return n;
  };
}

/** Says so when the built-in tiny model stands in for --model. */
async function modelPathOrDefault(model: string | undefined): Promise<string> {
  if (model) return model;
  const dir = await defaultModelPath();
  process.stderr.write(`Using the built-in tiny model at ${dir}.\nIts weights are random, so its text is gibberish: pass --model PATH for a real checkpoint.\n`);
  return dir;
}

/** The weight files of a checkpoint folder (what loading maps), or none. */
function weightFiles(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  try {
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.safetensors') && !f.endsWith('.gguf')) continue;
      files++;
      bytes += statSync(path.join(dir, f)).size;
    }
  } catch {
    // not a folder: the loader says what is wrong
  }
  return { files, bytes };
}

/**
 * loadModel with progress bars (lib/progress-display.ts): for `hf:` references a download bar in bytes
 * (speed, ETA), then for big checkpoints a loading bar over the load phases. NEMOTRON_NODE_PROGRESS=1 shows
 * them always (off a terminal too, one line every 0.5 s), NEMOTRON_NODE_PROGRESS=0 never.
 */
async function loadWithProgress(modelPath: string, options: LoadOptions): Promise<NemotronModel> {
  const label = isHubSpec(modelPath) ? parseHubSpec(modelPath).repo : path.basename(path.resolve(modelPath));
  const display = progressDisplay(label);
  // Ctrl+C while loading: put the cursor back (the bar hides it) and exit as the default handler would.
  const interrupted = () => {
    display.stop();
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  try {
    return await loadModel(modelPath, { ...options, onProgress: display.onProgress });
  } finally {
    display.stop();
    process.off('SIGINT', interrupted);
  }
}

/** --precision's help: without the flag, loadModel decides per weight type (lib/model/precision.ts). */
const PRECISION_HELP = 'matrix products: exact (f32 activations) | fast (bf16 / 8-bit activations where the CPU has the instructions, as llama.cpp) (default: fast for block-quantized GGUF weights, exact for float and FP8 weights)';

/** LoadOptions from the common flags, leaving out what was not given (no --precision: the checkpoint's default). */
function loadOptions(opts: { threads?: number; context?: number; precision?: string }): LoadOptions {
  const precision = opts.precision;
  if (precision !== undefined && precision !== 'exact' && precision !== 'fast') throw new CliArgumentError(`--precision must be exact or fast, got "${precision}"`);
  return { ...(opts.threads === undefined ? {} : { threads: opts.threads }), ...(opts.context === undefined ? {} : { contextLength: opts.context }), ...(precision === undefined ? {} : { precision }) };
}

interface ServeFlags {
  model?: string; port: number; host: string; maxConcurrent?: number; context?: number; sequences?: number; batchTokens?: number; kvDtype?: string; device?: string;
  cacheBytes?: number; threads?: number; precision?: string; modelName?: string; apiKey?: string; cors?: string | true; logLevel: string; metrics: boolean;
  headersTimeout?: number; bodyTimeout?: number; idleTimeout?: number;
}

/** serve's LoadOptions: every flag loadModel takes, left out when not given. */
function serveLoadOptions(opts: ServeFlags): LoadOptions {
  if (opts.kvDtype !== undefined && opts.kvDtype !== 'f16' && opts.kvDtype !== 'f32') throw new CliArgumentError(`--kv-dtype must be f16 or f32, got "${opts.kvDtype}"`);
  if (opts.device !== undefined && opts.device !== 'cpu' && opts.device !== 'cuda' && opts.device !== 'auto') throw new CliArgumentError(`--device must be cpu, cuda or auto, got "${opts.device}"`);
  return {
    ...loadOptions(opts),
    ...(opts.sequences === undefined ? {} : { maxSequences: opts.sequences }),
    ...(opts.batchTokens === undefined ? {} : { maxBatchTokens: opts.batchTokens }),
    ...(opts.kvDtype === undefined ? {} : { kvDtype: opts.kvDtype }),
    ...(opts.device === undefined ? {} : { device: opts.device }),
    ...(opts.cacheBytes === undefined ? {} : { cacheBytes: opts.cacheBytes }),
  };
}

/** config.json of a checkpoint folder (or the file itself), read as the planner reads it: HF writes bare Infinity/NaN. */
function readConfigJson(modelPath: string): { dir: string; file: string; config: Record<string, unknown> } {
  const resolved = path.resolve(modelPath);
  if (!existsSync(resolved)) throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `no checkpoint at ${resolved}: the path does not exist`);
  const file = statSync(resolved).isDirectory() ? path.join(resolved, 'config.json') : resolved;
  if (!existsSync(file)) throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `${path.dirname(file)} has no config.json`);
  let config: unknown;
  try {
    config = JSON.parse(readFileSync(file, 'utf8').replace(/(?<=[:,\[]\s*)-?(?:Infinity|NaN)\b/g, '0'));
  } catch (err) {
    throw new ModelLoadError('ERR_INVALID_CONFIG', `${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new ModelLoadError('ERR_INVALID_CONFIG', `${file} does not hold a JSON object`);
  return { dir: path.dirname(file), file, config: config as Record<string, unknown> };
}

/** 8888227328 -> "8,888,227,328". */
function grouped(n: number): string {
  return n.toLocaleString('en-US');
}

/** SGR dim for text on a terminal (not with NO_COLOR). */
function dimmer(stream: NodeJS.WriteStream): (s: string) => string {
  return stream.isTTY === true && !process.env.NO_COLOR ? (s) => `\x1b[2m${s}\x1b[22m` : (s) => s;
}

const MODEL_HELP = 'a checkpoint folder, a .gguf file, or hf:owner/name[@revision][/file.gguf] (downloaded to the Hugging Face cache) (default: the built-in tiny model, random weights)';

const program = new Command();
program
  .name('nemotron-node')
  .description('Run Nemotron-H / Nemotron Nano 2 models on this machine.')
  .version(packageVersion(), '-V, --version', 'print the version of nemotron-node');

program
  .command('generate')
  .description('generate a completion of PROMPT and stream it to stdout')
  .argument('<prompt>', 'the text to continue')
  .option('-m, --model <path>', MODEL_HELP)
  .option('-n, --max-tokens <n>', 'most tokens to generate', int('--max-tokens'), 64)
  .option('-t, --temperature <t>', 'sampling temperature (0 = greedy)', num('--temperature'), 0)
  .option('--top-k <k>', 'top-k cut-off (0 = off)', int('--top-k'), 0)
  .option('--top-p <p>', 'nucleus mass (1 = off)', num('--top-p'), 1)
  .option('--seed <n>', 'random seed', int('--seed'))
  .option('--threads <n>', 'CPU threads (default: all)', int('--threads'))
  .option('--precision <mode>', PRECISION_HELP)
  .action(async (prompt: string, opts: { model?: string; maxTokens: number; temperature: number; topK: number; topP: number; seed?: number; threads?: number; precision?: string }) => {
    const model = await loadWithProgress(await modelPathOrDefault(opts.model), loadOptions(opts));
    try {
      for await (const ev of model.stream({ prompt, maxTokens: opts.maxTokens, temperature: opts.temperature, topK: opts.topK, topP: opts.topP, ...(opts.seed === undefined ? {} : { seed: opts.seed }) })) {
        if (ev.type === 'text') process.stdout.write(ev.text);
        else if (ev.type === 'done') {
          const t = ev.result.timings;
          process.stdout.write('\n');
          process.stderr.write(
            `[${ev.result.usage.promptTokens} prompt tokens, ${ev.result.usage.completionTokens} generated, finish: ${ev.result.finishReason}; ` +
              `prefill ${t.prefillTokensPerSecond.toFixed(1)} tok/s, decode ${t.decodeTokensPerSecond.toFixed(1)} tok/s]\n`,
          );
        }
      }
    } finally {
      await model.close();
    }
  });

const CHAT_HELP = `In the chat:
  /think      reasoning on for the next turns (also "/think your message")
  /no_think   reasoning off for the next turns (also "/no_think your message")
  /exit       quit (also /quit, Ctrl+D; Ctrl+C stops a reply, or quits at the prompt)
  /help       this list
`;

program
  .command('chat')
  .description('chat in the terminal: replies stream as they are generated, reasoning shown apart (dimmed) from the answer')
  .option('-m, --model <path>', MODEL_HELP)
  .option('-s, --system <text>', 'a system message')
  .option('--no-think', 'start with reasoning off (as /no_think)')
  .option('--thinking-budget <n>', 'reasoning tokens per reply, after which the reasoning is closed at the next newline', int('--thinking-budget'))
  .option('-n, --max-tokens <n>', 'most tokens per reply, reasoning included (default: 4096 with reasoning on, else 256)', int('--max-tokens'))
  .option('-t, --temperature <t>', 'sampling temperature (default: 0.6 with reasoning on, else 0 = greedy)', num('--temperature'))
  .option('--seed <n>', 'random seed', int('--seed'))
  .option('-c, --context <n>', "context length in tokens (default: the model's, up to 8192)", int('--context'))
  .option('--threads <n>', 'CPU threads (default: all)', int('--threads'))
  .option('--precision <mode>', PRECISION_HELP)
  .addHelpText('after', `\n${CHAT_HELP}`)
  .action(async (opts: { model?: string; system?: string; think: boolean; thinkingBudget?: number; maxTokens?: number; temperature?: number; seed?: number; context?: number; threads?: number; precision?: string }) => {
    const dir = await modelPathOrDefault(opts.model);
    const model = await loadWithProgress(dir, loadOptions(opts));
    const out = process.stdout;
    const dim = dimmer(out);
    const dimErr = dimmer(process.stderr);
    let session: ChatSession;
    try {
      session = model.chat(opts.system === undefined ? {} : { system: opts.system });
    } catch (err) {
      await model.close(); // e.g. a checkpoint without a chat template
      throw err;
    }
    const turnOptions = {
      ...(opts.thinkingBudget === undefined ? {} : { thinkingBudget: opts.thinkingBudget }),
      ...(opts.maxTokens === undefined ? {} : { maxTokens: opts.maxTokens }),
      ...(opts.temperature === undefined ? {} : { temperature: opts.temperature }),
      ...(opts.seed === undefined ? {} : { seed: opts.seed }),
    };
    let thinking = opts.think;
    const interactive = process.stdin.isTTY === true && out.isTTY === true;
    const rl = readline.createInterface({ input: process.stdin, output: out, terminal: interactive, prompt: '> ' });
    let reply: AbortController | null = null;
    let quit = false;
    rl.on('SIGINT', () => {
      if (reply) reply.abort();
      else {
        quit = true;
        rl.close();
      }
    });
    const prompt = () => {
      if (interactive && !quit) rl.prompt();
    };
    process.stderr.write(`Chatting with ${path.basename(path.resolve(dir))}: reasoning ${thinking ? 'on' : 'off'}. /think, /no_think, /exit, /help\n`);

    // Reasoning is switched the way Nemotron Nano 2 switches it: a /think or /no_think keyword in the
    // message (the chat template reads it, then deletes it from the text the model sees).
    const send = async (text: string) => {
      reply = new AbortController();
      let section: 'start' | 'reasoning' | 'answer' = 'start';
      try {
        for await (const ev of session.stream(`${text} ${thinking ? '/think' : '/no_think'}`, { ...turnOptions, signal: reply.signal })) {
          if (ev.type === 'reasoning') {
            if (section === 'start') out.write(dim('thinking: '));
            section = 'reasoning';
            out.write(dim(ev.text));
          } else if (ev.type === 'text') {
            if (section === 'reasoning') out.write('\n');
            section = 'answer';
            out.write(ev.text);
          } else if (ev.type === 'done') {
            const r = ev.result;
            out.write('\n');
            const u = r.usage;
            process.stderr.write(
              dimErr(
                `[${u.promptTokens} prompt tokens (${u.cachedTokens} cached), ${u.completionTokens} generated (${u.reasoningTokens} reasoning), finish: ${r.finishReason}; ` +
                  `prefill ${r.timings.prefillTokensPerSecond.toFixed(1)} tok/s, decode ${r.timings.decodeTokensPerSecond.toFixed(1)} tok/s]`,
              ) + '\n',
            );
            if (r.finishReason === 'error' && r.error) process.stderr.write(`nemotron-node: ${r.error.message} [${r.error.code}]\n`);
          }
        }
      } catch (err) {
        if (!(err instanceof NemotronError)) throw err;
        if (section !== 'start') out.write('\n');
        process.stderr.write(`nemotron-node: ${err.message} [${err.code}]\n`);
      } finally {
        reply = null;
      }
    };

    prompt();
    try {
      for await (const raw of rl) {
        let line = raw.trim();
        const word = line.split(/\s+/, 1)[0] ?? '';
        if (word === '/exit' || word === '/quit') break;
        if (word === '/think' || word === '/no_think') {
          thinking = word === '/think';
          line = line.slice(word.length).trim();
          if (!line) process.stderr.write(`reasoning ${thinking ? 'on' : 'off'}\n`);
        } else if (word === '/help') {
          process.stderr.write(CHAT_HELP);
          line = '';
        } else if (word.startsWith('/')) {
          process.stderr.write(`unknown command ${word}: /think, /no_think, /exit, /help\n`);
          line = '';
        }
        if (line) await send(line);
        if (quit) break;
        prompt();
      }
    } finally {
      rl.close();
      session.dispose();
      await model.close();
    }
  });

program
  .command('inspect')
  .description("print a checkpoint's config, parameter count and memory plan; works from config.json alone (the weights need not be there)")
  .option('-m, --model <path>', 'a checkpoint folder or its config.json, or hf:owner/name[@revision] (fetches config.json only) (default: the built-in tiny model)')
  .option('-c, --context <n>', 'tokens per sequence (default: max_position_embeddings, up to 8192, as loadModel)', int('--context'))
  .option('-s, --sequences <n>', 'sequences alive at once (as loadModel maxSequences)', int('--sequences'), 8)
  .option('--batch-tokens <n>', 'prompt tokens per forward pass (as loadModel maxBatchTokens)', int('--batch-tokens'), 256)
  .option('--kv-dtype <dtype>', 'KV cache element type: f16 | f32', 'f16')
  .option('--cache-bytes <n>', 'snapshot cache budget in bytes (default: 1 GiB)', int('--cache-bytes'))
  .option('--json', 'print config, parameter count and plan as JSON')
  .option('--check', 'also load the weights and scan every tensor for NaN and Inf (loadModel checkTensors); exit status 1 names the first bad tensor')
  .action(async (opts: { model?: string; context?: number; sequences: number; batchTokens: number; kvDtype: string; cacheBytes?: number; json?: boolean; check?: boolean }) => {
    let modelPath = opts.model ?? (await modelPathOrDefault(undefined));
    if (isHubSpec(modelPath)) {
      // Only config.json: a model is sized before its weights are downloaded (--check needs them all).
      const spec = parseHubSpec(modelPath);
      if (spec.file && spec.file.split('/').pop() !== 'config.json') throw new CliArgumentError(`inspect reads config.json: give hf:${spec.repo}${spec.revision ? `@${spec.revision}` : ''}, not one of its files`);
      modelPath = (await pullModel(modelPath, opts.check ? {} : { file: 'config.json' })).path;
    }
    const { dir, file, config } = readConfigJson(modelPath);
    // --check: a full load with the scan, at the smallest plan (the weights are what is checked).
    let check: { tensors: 'finite'; seconds: number } | undefined;
    if (opts.check) {
      const t0 = performance.now();
      const m = await loadModel(dir, { checkTensors: true, contextLength: 64, maxSequences: 1, maxBatchTokens: 64, cacheBytes: 0, allowContextBeyondTraining: true });
      await m.close();
      check = { tensors: 'finite', seconds: Number(((performance.now() - t0) / 1000).toFixed(2)) };
    }
    if (opts.kvDtype !== 'f16' && opts.kvDtype !== 'f32') throw new CliArgumentError(`--kv-dtype must be f16 or f32, got "${opts.kvDtype}"`);
    const c = resolveConfig(config);
    const maxPos = typeof config.max_position_embeddings === 'number' ? config.max_position_embeddings : undefined;
    const contextLength = opts.context ?? Math.min(maxPos ?? 8192, 8192);
    const weights = weightFiles(dir);
    const planOptions: PlanOptions = {
      contextLength,
      maxSequences: opts.sequences,
      maxBatchTokens: opts.batchTokens,
      kvDtype: opts.kvDtype,
      ...(opts.cacheBytes === undefined ? {} : { cacheBytes: opts.cacheBytes }),
      ...(weights.files > 0 ? { weightBytes: weights.bytes } : {}),
    };
    const plan = planMemory(config, planOptions);
    if (opts.json) {
      const { lines, ...numbers } = plan;
      process.stdout.write(JSON.stringify({ config: file, resolved: c, weightFiles: weights, planOptions, plan: numbers, lines: lines(), ...(check ? { check } : {}) }, null, 2) + '\n');
      return;
    }
    const arch = [config.architectures, config.model_type].flat().filter((x) => typeof x === 'string').join(', ');
    const lines = [
      `config: ${file}`,
      `weights: ${weights.files > 0 ? `${weights.files} file${weights.files === 1 ? '' : 's'}, ${formatBytes(weights.bytes)}` : 'not present (the plan sizes them as bf16 from the config)'}`,
      `architecture: ${arch || 'unknown'}; ${c.pattern.length} layers: ${c.mambaLayers} Mamba-2, ${c.attentionLayers} attention, ${c.mlpLayers} MLP${c.moeLayers > 0 ? `, ${c.moeLayers} MoE` : ''}`,
      `pattern: ${c.pattern}`,
      `hidden size ${c.hiddenSize}, vocabulary ${grouped(c.vocabSize)}${maxPos === undefined ? '' : `, max positions ${grouped(maxPos)}`}`,
      ...(c.attentionLayers > 0 ? [`attention: ${c.numAttentionHeads} heads, ${c.numKeyValueHeads} KV heads, head dim ${c.headDim}`] : []),
      ...(c.mambaLayers > 0 ? [`Mamba-2: ${c.mambaNumHeads} heads x head dim ${c.mambaHeadDim}, state ${c.ssmStateSize}, ${c.nGroups} groups, conv kernel ${c.convKernel}`] : []),
      ...(c.mlpLayers > 0 ? [`MLP: intermediate size ${c.intermediateSize}`] : []),
      ...(c.moeLayers > 0
        ? [
            `MoE: ${c.nRoutedExperts} routed experts of width ${c.moeIntermediateSize}, ${c.numExpertsPerTok} per token, ${c.moeSharedExpertIntermediateSize > 0 ? `a shared expert of width ${c.moeSharedExpertIntermediateSize}` : 'no shared expert'}`,
          ]
        : []),
      `parameters: ${grouped(plan.parameterCount)} (${plan.parameterCount >= 1e9 ? `${(plan.parameterCount / 1e9).toFixed(2)} B` : `${(plan.parameterCount / 1e6).toFixed(2)} M`})${c.moeLayers > 0 ? `, ${grouped(activeParameterCount(config))} active per token (routed experts a token does not use and the embedding table left out)` : ''}`,
      `memory plan at ${grouped(contextLength)} tokens x ${opts.sequences} sequence${opts.sequences === 1 ? '' : 's'} (KV ${opts.kvDtype}, ${opts.batchTokens} batch tokens):`,
      ...plan.lines().map((l) => `  ${l}`),
      ...(check ? [`tensors: every weight is finite (checked in ${check.seconds} s)`] : []),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  });

program
  .command('bench')
  .description('measure prefill and decode tokens/s on a model (default: the built-in tiny model)')
  .option('-m, --model <path>', MODEL_HELP)
  .option('--prompt <n>', 'prompt tokens', int('--prompt'), 256)
  .option('--decode <n>', 'tokens to generate after the prompt', int('--decode'), 64)
  .option('--runs <n>', 'runs; the best of each is reported', int('--runs'), 3)
  .option('--batch-tokens <n>', 'prompt tokens per forward pass (prefill chunk)', int('--batch-tokens'), 256)
  .option('--threads <n>', 'CPU threads (default: all)', int('--threads'))
  .option('--precision <mode>', PRECISION_HELP)
  .addHelpText('after', '\nPrompts are synthetic token ids and end tokens are banned, so every run decodes exactly --decode tokens.\nFor decode set against this machine\'s memory bandwidth on a ~100M-parameter model, run `npm run bench` in a clone of the repository.\n')
  .action(async (opts: { model?: string; prompt: number; decode: number; runs: number; batchTokens: number; threads?: number; precision?: string }) => {
    for (const [flag, n] of [['--prompt', opts.prompt], ['--decode', opts.decode], ['--runs', opts.runs], ['--batch-tokens', opts.batchTokens]] as const) {
      if (n < 1) throw new CliArgumentError(`${flag} must be at least 1, got ${n}`);
    }
    const dir = await modelPathOrDefault(opts.model);
    const contextLength = Math.ceil((opts.prompt + opts.decode) / 64) * 64;
    // Synthetic tokens measure speed only: a context past the trained one is fine here.
    const model = await loadWithProgress(dir, { ...loadOptions(opts), contextLength, maxSequences: 1, maxBatchTokens: opts.batchTokens, allowContextBeyondTraining: true });
    try {
      const info = model.info;
      const vocab = info.config.vocabSize;
      const eos = new Set(info.eosTokenIds);
      const prompt: number[] = [];
      for (let i = 0; prompt.length < opts.prompt; i++) {
        const id = (i * 7919 + 13) % vocab;
        if (!eos.has(id)) prompt.push(id);
      }
      const logitBias = Object.fromEntries(info.eosTokenIds.map((id) => [id, -100]));
      let prefill = 0;
      let decode = 0;
      for (let r = 0; r < opts.runs; r++) {
        const res = await model.generate({ prompt, maxTokens: opts.decode, temperature: 0, logitBias });
        prefill = Math.max(prefill, res.timings.prefillTokensPerSecond);
        decode = Math.max(decode, res.timings.decodeTokensPerSecond);
      }
      const line = (k: string, v: string) => process.stdout.write(`${k.padEnd(10)}${v}\n`);
      line('model', `${info.path} (${grouped(info.parameterCount)} parameters, ${formatBytes(info.weightBytes)} of weights, ${info.config.hybridOverridePattern})`);
      line('machine', `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${info.threads} threads, ${info.backend}, precision ${info.precision}`);
      line('prefill', `${prefill.toFixed(1)} tokens/s (${opts.prompt}-token prompt, chunks of ${opts.batchTokens}, best of ${opts.runs})`);
      line('decode', `${decode.toFixed(1)} tokens/s (${opts.decode} tokens after the prompt, best of ${opts.runs})`);
    } finally {
      await model.close();
    }
  });

program
  .command('doctor')
  .description('what this machine can run: CPU and CUDA binaries, driver, GPUs, the GPU self-check against the CPU, a small decode benchmark')
  .option('--no-bench', 'skip the decode benchmark')
  .option('--json', 'print the report as JSON')
  .option('--require-gpu', 'exit status 1 also when no GPU is usable')
  .action(async (opts: { bench: boolean; json?: boolean; requireGpu?: boolean }) => {
    const { doctor, formatDoctor } = await import('./doctor.js');
    const r = await doctor({ bench: opts.bench });
    process.stdout.write(opts.json ? `${JSON.stringify(r, null, 1)}\n` : formatDoctor(r));
    if ((r.selfCheck && !r.selfCheck.ok) || (opts.requireGpu && !r.selfCheck)) process.exitCode = 1;
  });

program
  .command('pull')
  .description('download a Hugging Face model repository (or one file of it) into the Hugging Face cache and print its local path')
  .argument('<repo>', 'owner/name, owner/name@revision or owner/name/file.gguf (hf: prefix optional)')
  .option('-f, --file <path>', 'only this file of the repository (e.g. one .gguf of a repository holding several)')
  .option('-r, --revision <rev>', 'branch, tag or commit (default: main)')
  .option('--cache-dir <dir>', 'the hub cache (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)')
  .addHelpText(
    'after',
    `
Honours HF_TOKEN (gated and private repositories), HF_ENDPOINT (a mirror), HF_HUB_CACHE / HF_HOME and
HF_HUB_OFFLINE=1. Files another tool already put in the cache are not downloaded again; an interrupted
download resumes where it stopped. Every file's size and every LFS file's sha256 is checked.
Without --file: config, tokenizer and *.safetensors files (a GGUF-only repository needs --file unless it has one GGUF).
Then: nemotron-node generate --model hf:owner/name "prompt"
`,
  )
  .action(async (repo: string, opts: { file?: string; revision?: string; cacheDir?: string }) => {
    const spec = parseHubSpec(repo);
    const display = progressDisplay(spec.repo);
    const interrupted = () => {
      display.stop();
      process.exit(130);
    };
    process.once('SIGINT', interrupted);
    try {
      const r = await pullModel(repo, {
        ...(opts.file === undefined ? {} : { file: opts.file }),
        ...(opts.revision === undefined ? {} : { revision: opts.revision }),
        ...(opts.cacheDir === undefined ? {} : { cacheDir: opts.cacheDir }),
        onProgress: display.onProgress,
      });
      display.stop();
      const fetched = r.files.filter((f) => f.source === 'download');
      const bytes = r.files.reduce((n, f) => n + f.size, 0);
      process.stderr.write(
        `${r.repo}@${r.revision === r.commit ? r.commit.slice(0, 12) : `${r.revision} (${r.commit.slice(0, 12)})`}: ${r.files.length} file${r.files.length === 1 ? '' : 's'}, ${formatBytes(bytes)}; ` +
          `${fetched.length === 0 ? 'all in the cache already' : `${fetched.length} downloaded (${formatBytes(r.downloadedBytes)} received)`}\n`,
      );
      process.stdout.write(`${r.path}\n`);
    } finally {
      display.stop();
      process.off('SIGINT', interrupted);
    }
  });

program
  .command('make-tiny-model')
  .description('write a small Nemotron-H checkpoint with random weights (for tests and demos)')
  .argument('<dir>', 'the folder to create')
  .option('--seed <n>', 'random seed', int('--seed'), 0)
  .option('--pattern <p>', "hybrid_override_pattern, e.g. 'M-M*-M*-'")
  .option('--dtype <dtype>', 'bf16 | f16 | f32', 'bf16')
  .option('--hidden-size <n>', 'hidden size', int('--hidden-size'))
  .action(async (dir: string, opts: { seed: number; pattern?: string; dtype: string; hiddenSize?: number }) => {
    const r = await makeTinyModel(dir, {
      seed: opts.seed,
      dtype: opts.dtype as 'bf16' | 'f16' | 'f32',
      ...(opts.pattern === undefined ? {} : { pattern: opts.pattern }),
      ...(opts.hiddenSize === undefined ? {} : { hiddenSize: opts.hiddenSize }),
    });
    process.stdout.write(`wrote ${r.dir} (${r.parameterCount.toLocaleString('en-US')} parameters, random weights)\n`);
  });

program
  .command('serve')
  .description('serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models)')
  .option('-m, --model <path>', MODEL_HELP)
  .option('-p, --port <n>', 'port to listen on (0: any free port)', int('--port'), 8080)
  .option('--host <host>', 'interface to listen on (0.0.0.0 or :: for all; default: this machine only)', '127.0.0.1')
  .option('--max-concurrent <n>', 'requests in flight before 429 (default: 4 x the model\'s sequences)', int('--max-concurrent'))
  .option('-c, --context <n>', "context length in tokens (default: the model's, up to 8192)", int('--context'))
  .option('-s, --sequences <n>', 'sequences alive at once: requests beyond them queue (default: 8)', int('--sequences'))
  .option('--batch-tokens <n>', 'prompt tokens per forward pass (default: 256)', int('--batch-tokens'))
  .option('--kv-dtype <dtype>', 'KV cache element type: f16 | f32 (default: f16)')
  .option('--device <device>', 'cpu | cuda | auto (default: cpu)')
  .option('--cache-bytes <n>', 'prefix (snapshot) cache budget in bytes (default: 1 GiB)', int('--cache-bytes'))
  .option('--threads <n>', 'CPU threads (default: all)', int('--threads'))
  .option('--precision <mode>', PRECISION_HELP)
  .option('--model-name <name>', 'the model id clients see and must send (default: the checkpoint folder name)')
  .option('--api-key <key>', 'require Authorization: Bearer <key> (default: $NEMOTRON_API_KEY, else none)')
  .option('--cors [origins]', 'answer CORS requests: from any origin, or only the comma-separated origins given (exact, or /regex/)')
  .option('--log-level <level>', 'request logs (JSON lines on stdout): fatal | error | warn | info | debug | trace | silent', 'info')
  .option('--no-metrics', 'do not serve Prometheus metrics at /metrics')
  .option('--headers-timeout <ms>', `close a connection whose request headers take longer (408) (default: ${DEFAULT_TIMEOUTS.headersTimeoutMs})`, int('--headers-timeout'))
  .option('--body-timeout <ms>', `close a connection whose whole request, body included, takes longer (408) (default: ${DEFAULT_TIMEOUTS.bodyTimeoutMs})`, int('--body-timeout'))
  .option('--idle-timeout <ms>', `close a kept-alive or new connection that sends no request for this long (default: ${DEFAULT_TIMEOUTS.idleTimeoutMs})`, int('--idle-timeout'))
  .addHelpText('after', '\nTime limits apply to receiving requests only: a generation may take as long as it needs.\nBodies over 8 MiB get 413, before the body is sent when the client asks `Expect: 100-continue`.\nPrometheus metrics (vLLM\'s names: vllm:num_requests_running, vllm:time_to_first_token_seconds, ...) at /metrics.\n')
  .action(async (opts: ServeFlags) => {
    const { createServer } = await import('./server/index.js'); // loaded here so other commands do not load the HTTP stack
    const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
    const logLevel = levels.find((l) => l === opts.logLevel);
    if (!logLevel) throw new CliArgumentError(`--log-level must be one of ${levels.join(', ')}, got "${opts.logLevel}"`);
    let modelPath = opts.model;
    if (!modelPath) {
      modelPath = await defaultModelPath();
      process.stderr.write(`Using the built-in tiny model at ${modelPath}.\nIts weights are random, so its text is gibberish: pass --model PATH for a real checkpoint.\n`);
    }
    const model = await loadWithProgress(modelPath, serveLoadOptions(opts));
    const apiKey = opts.apiKey ?? (process.env.NEMOTRON_API_KEY || undefined);
    // hf:owner/name is served as "name" (the folder name a local copy would have), not as the snapshot's commit hash.
    const hubSpec = isHubSpec(modelPath) ? parseHubSpec(modelPath) : undefined;
    const modelName = opts.modelName ?? (hubSpec && !hubSpec.file ? hubSpec.repo.split('/')[1] : undefined);
    const server = await createServer(model, {
      ...(modelName === undefined ? {} : { modelName }),
      ...(opts.maxConcurrent === undefined ? {} : { maxConcurrent: opts.maxConcurrent }),
      ...(apiKey === undefined ? {} : { apiKey }),
      ...(opts.headersTimeout === undefined ? {} : { headersTimeoutMs: opts.headersTimeout }),
      ...(opts.bodyTimeout === undefined ? {} : { bodyTimeoutMs: opts.bodyTimeout }),
      ...(opts.idleTimeout === undefined ? {} : { idleTimeoutMs: opts.idleTimeout }),
      ...(opts.cors === undefined ? {} : { cors: opts.cors }),
      metrics: opts.metrics,
      logger: logLevel,
    });
    let url: string;
    try {
      url = await server.listen(opts.port, opts.host);
    } catch (err) {
      await model.close();
      throw err;
    }
    process.stdout.write(`listening on ${url} (OpenAI base URL: ${url}/v1)\n`);
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        process.stderr.write('shutting down\n');
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    await server.close();
    await model.close();
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof NemotronError) process.stderr.write(`nemotron-node: ${err.message} [${err.code}]\n`);
  else process.stderr.write(`nemotron-node: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
