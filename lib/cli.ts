#!/usr/bin/env node
/**
 * The nemotron-node command line. `generate` streams a completion to stdout; with no --model it uses
 * the built-in tiny model (random weights) so it runs anywhere.
 */
import { Command, InvalidArgumentError as CliArgumentError } from 'commander';

import { defaultModelPath } from './default-model.js';
import { NemotronError } from './errors.js';
import { loadModel } from './model.js';
import { makeTinyModel } from './tiny-model/index.js';

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

const program = new Command();
program.name('nemotron-node').description('Run Nemotron-H / Nemotron Nano 2 models on this machine.');

program
  .command('generate')
  .description('generate a completion of PROMPT and stream it to stdout')
  .argument('<prompt>', 'the text to continue')
  .option('-m, --model <path>', 'a Hugging Face checkpoint folder (default: the built-in tiny model, random weights)')
  .option('-n, --max-tokens <n>', 'most tokens to generate', int('--max-tokens'), 64)
  .option('-t, --temperature <t>', 'sampling temperature (0 = greedy)', num('--temperature'), 0)
  .option('--top-k <k>', 'top-k cut-off (0 = off)', int('--top-k'), 0)
  .option('--top-p <p>', 'nucleus mass (1 = off)', num('--top-p'), 1)
  .option('--seed <n>', 'random seed', int('--seed'))
  .option('--threads <n>', 'CPU threads (default: all)', int('--threads'))
  .action(async (prompt: string, opts: { model?: string; maxTokens: number; temperature: number; topK: number; topP: number; seed?: number; threads?: number }) => {
    let modelPath = opts.model;
    if (!modelPath) {
      modelPath = await defaultModelPath();
      process.stderr.write(`Using the built-in tiny model at ${modelPath}.\nIts weights are random, so its text is gibberish: pass --model PATH for a real checkpoint.\n`);
    }
    const model = await loadModel(modelPath, opts.threads === undefined ? {} : { threads: opts.threads });
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
  .option('-m, --model <path>', 'a Hugging Face checkpoint folder (default: the built-in tiny model, random weights)')
  .option('-p, --port <n>', 'port to listen on (0: any free port)', int('--port'), 8080)
  .option('--host <host>', 'interface to listen on (0.0.0.0: all)', '127.0.0.1')
  .option('--max-concurrent <n>', 'requests in flight before 429 (default: 4 x the model\'s sequences)', int('--max-concurrent'))
  .option('--threads <n>', 'CPU threads (default: all)', int('--threads'))
  .option('--model-name <name>', 'the model id clients see (default: the checkpoint folder name)')
  .option('--api-key <key>', 'require Authorization: Bearer <key> (default: $NEMOTRON_API_KEY, else none)')
  .action(async (opts: { model?: string; port: number; host: string; maxConcurrent?: number; threads?: number; modelName?: string; apiKey?: string }) => {
    const { createServer } = await import('./server/index.js'); // loaded here so other commands do not load the HTTP stack
    let modelPath = opts.model;
    if (!modelPath) {
      modelPath = await defaultModelPath();
      process.stderr.write(`Using the built-in tiny model at ${modelPath}.\nIts weights are random, so its text is gibberish: pass --model PATH for a real checkpoint.\n`);
    }
    const model = await loadModel(modelPath, opts.threads === undefined ? {} : { threads: opts.threads });
    const apiKey = opts.apiKey ?? (process.env.NEMOTRON_API_KEY || undefined);
    const server = await createServer(model, {
      ...(opts.modelName === undefined ? {} : { modelName: opts.modelName }),
      ...(opts.maxConcurrent === undefined ? {} : { maxConcurrent: opts.maxConcurrent }),
      ...(apiKey === undefined ? {} : { apiKey }),
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
