// The chat, inspect and bench commands, the load progress bar and every --help, run as a user runs them:
// a child process, stdin written, stdout and stderr read back.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { planMemory } from '../../lib/memory.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir } from '../helpers.js';
import { NEMOTRON_H_4B, NEMOTRON_NANO_9B_V2 } from '../../lib/known-configs.js';

const root = path.resolve(import.meta.dirname, '../..');
const cli = ['--import', 'tsx', path.join(root, 'lib/cli.ts')];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...cli, ...args], { cwd: root, env: { ...process.env, NO_COLOR: '1', ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/** The chat's per-turn summary lines: [P prompt tokens (C cached), N generated (R reasoning), finish: F; ...]. */
function turns(stderr: string): Array<{ prompt: number; cached: number; generated: number; reasoning: number; finish: string }> {
  return [...stderr.matchAll(/\[(\d+) prompt tokens \((\d+) cached\), (\d+) generated \((\d+) reasoning\), finish: (\w+);/g)].map((m) => ({
    prompt: Number(m[1]),
    cached: Number(m[2]),
    generated: Number(m[3]),
    reasoning: Number(m[4]),
    finish: m[5]!,
  }));
}

// Nemotron-Nano-9B-v2's config.json fields the planner reads (docs/architecture.md §1.1), with no weights beside it.
const CONFIG_9B = { ...NEMOTRON_NANO_9B_V2, time_step_limit: [0.0, Infinity] };

describe('nemotron-node chat, inspect, bench', () => {
  const cache = tempDir('cli-commands-cache');
  const work = tempDir('cli-commands');
  const env = { NEMOTRON_NODE_CACHE: cache.dir };
  const tinyDir = path.join(cache.dir, 'tiny-default-v1');
  beforeAll(async () => {
    // Makes the default tiny model once for every test below.
    const r = await runCli(['generate', '--max-tokens', '2', 'x'], { env });
    expect(r.code).toBe(0);
  });
  afterAll(() => {
    cache.cleanup();
    work.cleanup();
  });

  describe('chat', () => {
    it('two messages and /exit: both replies stream to stdout, the second turn reuses the first (cached tokens)', async () => {
      const r = await runCli(['chat', '--max-tokens', '16', '--seed', '3'], { env, input: 'Hello there\nAnd a second question\n/exit\nnever sent\n' });
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/Chatting with tiny-default-v1: reasoning on/);
      const t = turns(r.stderr);
      expect(t).toHaveLength(2); // the line after /exit is not sent
      for (const turn of t) {
        expect(turn.generated).toBe(16);
        expect(turn.finish).toBe('length');
      }
      expect(t[0]!.cached).toBe(0);
      expect(t[1]!.cached).toBeGreaterThan(0);
      expect(t[1]!.prompt).toBeGreaterThan(t[0]!.prompt);
      // Reasoning on: each reply opens with the reasoning, labelled apart from the answer.
      expect(t[0]!.reasoning).toBeGreaterThan(0);
      expect(r.stdout.split('thinking: ').length - 1).toBe(2);
    });

    it('/no_think and /think switch reasoning between turns; the reply without reasoning has no thinking section', async () => {
      const r = await runCli(['chat', '--max-tokens', '8', '--seed', '1'], { env, input: '/no_think\nfirst\n/think second\n' });
      expect(r.code).toBe(0); // end of input ends the chat like /exit
      expect(r.stderr).toMatch(/reasoning off/);
      const t = turns(r.stderr);
      expect(t).toHaveLength(2);
      expect(t[0]!.reasoning).toBe(0);
      expect(t[1]!.reasoning).toBeGreaterThan(0);
      expect(t[1]!.cached).toBeGreaterThan(0);
      expect(r.stdout.split('thinking: ').length - 1).toBe(1);
    });

    it('--no-think starts with reasoning off; --thinking-budget and --system are accepted; unknown commands are reported', async () => {
      const r = await runCli(['chat', '--no-think', '--thinking-budget', '4', '--system', 'Be brief.', '--max-tokens', '6'], { env, input: '/bogus\nhi\n/help\n/quit\n' });
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/reasoning off/);
      expect(r.stderr).toMatch(/unknown command \/bogus/);
      expect(r.stderr).toMatch(/\/no_think\s+reasoning off for the next turns/);
      const t = turns(r.stderr);
      expect(t).toHaveLength(1);
      expect(t[0]!.reasoning).toBe(0);
    });

    it('a turn that fails (a message beyond the context) is reported and the chat goes on', async () => {
      const long = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');
      const r = await runCli(['chat', '--context', '128', '--max-tokens', '4'], { env, input: `${long}\nshort\n/exit\n` });
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/ERR_CONTEXT_OVERFLOW/);
      expect(turns(r.stderr)).toHaveLength(1);
    });
  });

  describe('inspect', () => {
    it("prints the tiny model's config, parameter count and exactly planMemory's lines for --context and --sequences", async () => {
      const r = await runCli(['inspect', '--model', tinyDir, '--context', '1024', '--sequences', '3'], { env });
      expect(r.code).toBe(0);
      const config = JSON.parse(readFileSync(path.join(tinyDir, 'config.json'), 'utf8').replace(/\bInfinity\b/g, '0')) as Record<string, unknown>;
      const weightBytes = statSync(path.join(tinyDir, 'model.safetensors')).size;
      const plan = planMemory(config, { contextLength: 1024, maxSequences: 3, maxBatchTokens: 256, kvDtype: 'f16', weightBytes });
      const out = r.stdout.split('\n');
      for (const line of plan.lines()) expect(out).toContain(`  ${line}`);
      expect(r.stdout).toContain(`parameters: ${plan.parameterCount.toLocaleString('en-US')}`);
      expect(r.stdout).toContain(`pattern: ${String(config.hybrid_override_pattern)}`);
      expect(r.stdout).toMatch(/memory plan at 1,024 tokens x 3 sequences/);
    });

    it('works from a config.json alone (no weights): the 9B at 32k x 8 matches planMemory, bf16 weights', async () => {
      const dir = path.join(work.dir, 'nano-9b-config-only');
      mkdirSync(dir, { recursive: true });
      // HF writes a bare Infinity (time_step_limit): inspect must read it as the loader does.
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG_9B, null, 2).replace('null', 'Infinity'));
      const r = await runCli(['inspect', '--model', path.join(dir, 'config.json'), '--context', '32768', '--sequences', '8']);
      expect(r.code).toBe(0);
      const { time_step_limit: _ignored, ...config } = CONFIG_9B;
      const plan = planMemory(config, { contextLength: 32768, maxSequences: 8 });
      for (const line of plan.lines()) expect(r.stdout.split('\n')).toContain(`  ${line}`);
      expect(r.stdout).toContain('parameters: 8,888,227,328 (8.89 B)');
      expect(r.stdout).toMatch(/weights: not present/);
      expect(r.stdout).toMatch(/56 layers: 27 Mamba-2, 4 attention, 25 MLP/);

      // The folder works too, and the defaults are loadModel's: context min(max_position_embeddings, 8192), 8 sequences.
      const j = await runCli(['inspect', '--model', dir, '--json']);
      expect(j.code).toBe(0);
      const parsed = JSON.parse(j.stdout) as { plan: { total: number; parameterCount: number }; planOptions: { contextLength: number; maxSequences: number } };
      expect(parsed.planOptions).toMatchObject({ contextLength: 8192, maxSequences: 8 });
      expect(parsed.plan.total).toBe(planMemory(config, { contextLength: 8192, maxSequences: 8 }).total);
    });

    it('knows the Nemotron-H 4B from its config.json: layers, dimensions, parameters and the plan at 128K', async () => {
      const dir = path.join(work.dir, 'nemotron-h-4b-config-only');
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify(NEMOTRON_H_4B, null, 2));
      const r = await runCli(['inspect', '--model', dir, '--context', '131072', '--sequences', '1']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/52 layers: 24 Mamba-2, 4 attention, 24 MLP/);
      expect(r.stdout).toContain('hidden size 3072, vocabulary 131,072, max positions 131,072');
      expect(r.stdout).toContain('attention: 32 heads, 8 KV heads, head dim 128');
      expect(r.stdout).toContain('Mamba-2: 112 heads x head dim 64, state 128, 8 groups, conv kernel 4');
      expect(r.stdout).toContain('MLP: intermediate size 12288');
      expect(r.stdout).toContain('parameters: 4,489,223,040 (4.49 B)');
      const plan = planMemory(NEMOTRON_H_4B, { contextLength: 131072, maxSequences: 1 });
      for (const line of plan.lines()) expect(r.stdout.split('\n')).toContain(`  ${line}`);
    });

    it('a missing path or a bad option exits 1 with a clear message', async () => {
      const missing = await runCli(['inspect', '--model', path.join(work.dir, 'nope')]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/ERR_MODEL_NOT_FOUND/);
      const bad = await runCli(['inspect', '--model', tinyDir, '--sequences', 'many']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/--sequences must be an integer/);
    });
  });

  describe('bench', () => {
    it('measures prefill and decode tokens/s on the tiny model with small counts', async () => {
      const r = await runCli(['bench', '--prompt', '48', '--decode', '8', '--runs', '2', '--threads', '1'], { env });
      expect(r.code).toBe(0);
      const prefill = /^prefill\s+([\d.]+) tokens\/s \(48-token prompt/m.exec(r.stdout);
      const decode = /^decode\s+([\d.]+) tokens\/s \(8 tokens after the prompt, best of 2\)/m.exec(r.stdout);
      expect(prefill && Number(prefill[1])).toBeGreaterThan(0);
      expect(decode && Number(decode[1])).toBeGreaterThan(0);
      expect(r.stdout).toMatch(/^model\s+.*tiny-default-v1 \(550,624 parameters/m);
      expect(r.stdout).toMatch(/1 threads/);
      expect(r.stdout).toMatch(/^machine\s+.*, precision exact$/m); // bf16 weights: 'exact' by default
    });

    it("without --precision a Q8_0 GGUF runs 'fast' (the per-weight-type default); --precision exact wins", async () => {
      const q8 = await makeTinyModel(path.join(work.dir, 'q8'), { hiddenSize: 256, mambaNumHeads: 8, mambaHeadDim: 32, headDim: 64, intermediateSize: 512, chunkSize: 128, dtype: 'f32', seed: 3, format: 'gguf', ggufType: 'Q8_0' });
      const args = ['bench', '--model', q8.gguf!, '--prompt', '16', '--decode', '2', '--runs', '1', '--threads', '1'];
      const byDefault = await runCli(args, { env });
      expect(byDefault.code).toBe(0);
      expect(byDefault.stdout).toMatch(/^machine\s+.*, precision fast$/m);
      const exact = await runCli([...args, '--precision', 'exact'], { env });
      expect(exact.code).toBe(0);
      expect(exact.stdout).toMatch(/^machine\s+.*, precision exact$/m);
      const bad = await runCli([...args, '--precision', 'auto'], { env });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/--precision must be exact or fast, got "auto"/);
    });

    it('rejects counts below 1', async () => {
      const r = await runCli(['bench', '--decode', '0'], { env });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/--decode must be at least 1/);
    });
  });

  it('loading shows a bar over the load phases (plan, tokenizer, engine) when asked to, and how long the load took', async () => {
    const r = await runCli(['generate', '--max-tokens', '2', 'x'], { env: { ...env, NEMOTRON_NODE_PROGRESS: '1' } });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/loading tiny-default-v1 \(1\.\d\d MiB of weights\) \[[\u2591\u2588]{24}\] [0-2]\/3 (reading|mapping)[^\n]*\d+\.\d s/);
    expect(r.stderr).toMatch(/loading tiny-default-v1 \(1\.\d\d MiB of weights\) \[\u2588{24}\] 3\/3 ready, \d+\.\d s/);
    expect(r.stderr).toMatch(/loaded tiny-default-v1 in \d+\.\d s/);
    // Off a terminal, and for small weights, there is none by default.
    const plain = await runCli(['generate', '--max-tokens', '2', 'x'], { env });
    expect(plain.stderr).not.toMatch(/loading /);
  });

  describe('--help', () => {
    it('lists every command', async () => {
      const r = await runCli(['--help']);
      expect(r.code).toBe(0);
      for (const cmd of ['generate', 'chat', 'inspect', 'bench', 'pull', 'make-tiny-model']) expect(r.stdout).toMatch(new RegExp(`^  ${cmd} `, 'm'));
    });

    it.each([
      ['generate', ['--max-tokens', '--temperature', '--model']],
      ['chat', ['--thinking-budget', '--no-think', '--system', '/think', '/no_think', '/exit']],
      ['inspect', ['--context', '--sequences', '--kv-dtype', '--json', 'config.json']],
      ['bench', ['--prompt', '--decode', '--runs', 'npm run bench']],
      ['make-tiny-model', ['--pattern', '--dtype']],
    ])('%s --help', async (cmd, words) => {
      const r = await runCli([cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: nemotron-node ${cmd}`));
      for (const w of words) expect(r.stdout).toContain(w);
    });
  });
});
