// Grammar-constrained decoding (issue #15): on the random tiny model, whose unconstrained output is
// gibberish, every constrained answer parses and validates (ajv) against its schema; batched constrained
// and unconstrained requests give the tokens they give alone; tool choice and reasoning triggers.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { GenerateResult } from '../../lib/generation.js';
import { vocabularyBytes } from '../../lib/grammar.js';
import { loadModel, type NemotronModel } from '../../lib/model.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';

let dir: string;
let model: NemotronModel;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nemo-grammar-'));
  await makeTinyModel(dir, { seed: 5 });
  model = await loadModel(dir, { maxSequences: 8, contextLength: 1024 });
}, 120_000);

afterAll(async () => {
  await model?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const SCHEMAS: Record<string, Record<string, unknown>> = {
  nested: {
    type: 'object',
    properties: {
      id: { type: 'integer', minimum: 0, maximum: 1000 },
      user: {
        type: 'object',
        properties: {
          name: { type: 'string', maxLength: 8 },
          role: { enum: ['admin', 'user', 'guest'] },
        },
        required: ['name', 'role'],
      },
      note: { type: 'string', maxLength: 6 },
    },
    required: ['id', 'user'],
  },
  arrays: {
    type: 'object',
    properties: {
      tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, minItems: 1, maxItems: 3 },
      scores: { type: 'array', items: { type: 'number' }, maxItems: 2 },
      ok: { type: 'boolean' },
    },
    required: ['tags', 'ok'],
  },
  pattern: {
    type: 'object',
    properties: {
      code: { type: 'string', pattern: '^[A-Z]{2}-[0-9]{3}$' },
      level: { type: 'integer', minimum: 1, maximum: 5 },
      ratio: { type: 'number' },
    },
    required: ['code', 'level'],
  },
  enumTop: { enum: ['red', 'green', 'blue', 42, null] },
};

const ajv = new Ajv({ strict: false });

/** A result that ended cleanly parses and validates; one cut by maxTokens says so. */
function check(r: GenerateResult, schema: Record<string, unknown> | null): 'valid' | 'length' {
  if (r.finishReason === 'length') {
    expect(r.parsed).toBeUndefined();
    expect(r.parseError).toMatch(/maxTokens/);
    return 'length';
  }
  expect(r.finishReason, r.error?.message).toBe('stop');
  expect(r.parseError, r.text).toBeUndefined();
  expect(r.parsed).toEqual(JSON.parse(r.text));
  if (schema) {
    const validate = ajv.compile(schema);
    expect(validate(r.parsed), `${r.text}: ${ajv.errorsText(validate.errors)}`).toBe(true);
  } else expect(typeof r.parsed === 'object' && r.parsed !== null && !Array.isArray(r.parsed)).toBe(true);
  return 'valid';
}

describe('the vocabulary handed to the grammar engine', () => {
  it('byte-level pieces map back to their bytes; special tokens are empty; <think>/<TOOLCALL> keep their text', () => {
    const tok = (model as unknown as { tokenizer: Parameters<typeof vocabularyBytes>[0] }).tokenizer;
    const bytes = vocabularyBytes(tok, model.info.config.vocabSize);
    expect(bytes).toHaveLength(model.info.config.vocabSize);
    for (const id of [2, 12]) expect(bytes[id]).toEqual(new Uint8Array(0)); // </s>, <SPECIAL_12>
    expect(Buffer.from(bytes[14]!).toString()).toBe('</think>');
    expect(Buffer.from(bytes[15]!).toString()).toBe('<TOOLCALL>');
    // Every ordinary token's bytes are what the tokenizer decodes it to (ASCII pieces, where decode is exact).
    let checked = 0;
    for (let id = 21; id < bytes.length; id++) {
      const b = Buffer.from(bytes[id]!);
      if (b.length === 0 || b.some((x) => x >= 0x80)) continue;
      expect(b.toString('latin1')).toBe(model.detokenize([id]));
      checked++;
    }
    expect(checked).toBeGreaterThan(100);
  });
});

describe('responseFormat on the random tiny model', () => {
  it('>= 200 seeded generations parse and validate against their schemas (greedy, temperature, top-k, top-p, batched)', async () => {
    const names = Object.keys(SCHEMAS);
    const jobs: Array<{ name: string; seed: number }> = [];
    for (let seed = 0; seed < 240; seed++) jobs.push({ name: names[seed % names.length]!, seed });
    let valid = 0;
    let cut = 0;
    // 8 at a time: batched requests, each with its own grammar.
    for (let i = 0; i < jobs.length; i += 8) {
      const batch = jobs.slice(i, i + 8);
      const results = await Promise.all(
        batch.map(({ name, seed }) =>
          model.generate({
            prompt: `Answer in JSON ${seed}:`,
            maxTokens: 160,
            seed,
            temperature: seed % 4 === 0 ? 0 : 1.2,
            topK: seed % 4 === 1 ? 40 : 0,
            topP: seed % 4 === 2 ? 0.9 : 1,
            responseFormat: { type: 'json_schema', schema: SCHEMAS[name]! },
          }),
        ),
      );
      results.forEach((r, k) => (check(r, SCHEMAS[batch[k]!.name]!) === 'valid' ? valid++ : cut++));
    }
    console.log(`grammar: ${valid} generations validated, ${cut} cut by maxTokens (of ${jobs.length})`);
    expect(valid).toBeGreaterThanOrEqual(200);
  }, 600_000);

  it('json_object: any JSON object', async () => {
    let valid = 0;
    for (let seed = 0; seed < 12; seed++) {
      const r = await model.generate({ prompt: 'JSON please', maxTokens: 400, seed, temperature: 1, responseFormat: { type: 'json_object' } });
      if (check(r, null) === 'valid') valid++;
    }
    expect(valid).toBeGreaterThanOrEqual(5); // the rest ran into maxTokens (free-form objects can nest deep)
  }, 120_000);

  it('maxTokens cut mid-JSON: finishReason length, parsed undefined, parseError', async () => {
    const r = await model.generate({ prompt: 'x', maxTokens: 3, seed: 1, temperature: 1, responseFormat: { type: 'json_schema', schema: SCHEMAS.nested! } });
    expect(r.finishReason).toBe('length');
    expect(r.parsed).toBeUndefined();
    expect(r.parseError).toMatch(/maxTokens/);
  });

  it('regex and EBNF grammars', async () => {
    const re = await model.generate({ prompt: 'a date', maxTokens: 40, seed: 3, temperature: 1, responseFormat: { type: 'regex', regex: '[0-9]{4}-[0-9]{2}-[0-9]{2}' } });
    expect(re.finishReason).toBe('stop');
    expect(re.text).toMatch(/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/);
    const g = await model.generate({ prompt: 'yes or no', maxTokens: 40, seed: 4, temperature: 1, responseFormat: { type: 'grammar', grammar: 'root ::= ("yes" | "no") "!"' } });
    expect(g.finishReason).toBe('stop');
    expect(['yes!', 'no!']).toContain(g.text);
    expect(g.parsed).toBeUndefined();
  }, 60_000);

  it('an invalid schema or grammar is refused with ERR_INVALID_GRAMMAR', async () => {
    const r = await model.generate({ prompt: 'x', maxTokens: 4, responseFormat: { type: 'grammar', grammar: 'root ::= (' } });
    expect(r.finishReason).toBe('error');
    expect(r.error?.code).toBe('ERR_INVALID_GRAMMAR');
    await expect(model.startStream({ prompt: 'x', maxTokens: 4, responseFormat: { type: 'grammar', grammar: 'root ::= (' } })).rejects.toMatchObject({ code: 'ERR_INVALID_GRAMMAR' });
    expect(() => model.stream({ prompt: 'x', responseFormat: { type: 'yaml' } as never })).toThrow(/responseFormat/);
  });

  it('batched constrained and unconstrained requests give the same tokens as alone', async () => {
    const opts = (seed: number, constrained: boolean) => ({
      prompt: `batch ${seed}`,
      maxTokens: 48,
      seed,
      temperature: 0.9,
      ...(constrained ? { responseFormat: { type: 'json_schema' as const, schema: SCHEMAS.arrays! } } : {}),
    });
    const plan = [0, 1, 2, 3, 4, 5].map((s) => ({ seed: s, constrained: s % 2 === 0 }));
    const alone: number[][] = [];
    for (const p of plan) alone.push((await model.generate(opts(p.seed, p.constrained))).tokens);
    const together = await Promise.all(plan.map((p) => model.generate(opts(p.seed, p.constrained))));
    expect(together.map((r) => r.tokens)).toEqual(alone);
  }, 120_000);

  it('stream() carries parsed in its done event', async () => {
    let done: GenerateResult | undefined;
    for await (const ev of model.stream({ prompt: 's', maxTokens: 120, seed: 9, temperature: 1, responseFormat: { type: 'json_schema', schema: SCHEMAS.pattern! } })) {
      if (ev.type === 'done') done = ev.result;
    }
    if (check(done!, SCHEMAS.pattern!) === 'valid') expect((done!.parsed as { code: string }).code).toMatch(/^[A-Z]{2}-[0-9]{3}$/);
  });
});

const TOOLS = [
  {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 10 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'] },
    },
  },
  {
    type: 'function' as const,
    function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'] } },
  },
];

describe('toolChoice', () => {
  it("'required' and a named tool: the answer is a parsed tool call whose arguments satisfy the tool's schema", async () => {
    let calls = 0;
    for (let seed = 0; seed < 16; seed++) {
      const named = seed % 2 === 1;
      const r = await model.generate({
        messages: [{ role: 'user', content: `call a tool ${seed}` }],
        reasoning: false,
        tools: TOOLS,
        toolChoice: named ? { name: 'add' } : 'required',
        maxTokens: 200,
        seed,
        temperature: 1,
      });
      if (r.finishReason === 'length') continue;
      expect(r.finishReason).toBe('stop');
      expect(r.toolCallErrors).toEqual([]);
      expect(r.toolCalls.length).toBeGreaterThan(0);
      for (const c of r.toolCalls) {
        if (named) expect(c.name).toBe('add');
        const tool = TOOLS.find((t) => t.function.name === c.name)!;
        expect(ajv.validate(tool.function.parameters, c.arguments), JSON.stringify(c)).toBe(true);
        calls++;
      }
    }
    expect(calls).toBeGreaterThanOrEqual(10);
  }, 300_000);

  it('reasoning stays free: with reasoning on, the constraint applies after </think>', async () => {
    // A thinking budget of 4 forces `</think>` soon; the answer after it is the JSON.
    let valid = 0;
    for (let seed = 0; seed < 6; seed++) {
      const r = await model.generate({
        messages: [{ role: 'user', content: 'json' }],
        reasoning: true,
        thinkingBudget: 4,
        maxTokens: 700,
        seed,
        responseFormat: { type: 'json_schema', schema: SCHEMAS.arrays! },
      });
      if (r.finishReason === 'length') continue;
      expect(r.reasoning.length).toBeGreaterThan(0);
      check(r, SCHEMAS.arrays!);
      valid++;
    }
    expect(valid).toBeGreaterThanOrEqual(3);
  }, 300_000);

  it('chat.send takes toolChoice with the session\'s tools', async () => {
    const chat = model.chat({ reasoning: false, tools: TOOLS });
    const r = await chat.send('weather?', { maxTokens: 200, seed: 3, temperature: 1, toolChoice: { name: 'get_weather' } });
    if (r.finishReason !== 'length') {
      expect(r.toolCalls.map((c) => c.name)).toEqual(r.toolCalls.map(() => 'get_weather'));
      expect(r.toolCalls.length).toBeGreaterThan(0);
      for (const c of r.toolCalls) expect(ajv.validate(TOOLS[0]!.function.parameters, c.arguments)).toBe(true);
    }
  });

  it('chat.send takes responseFormat', async () => {
    const chat = model.chat({ reasoning: false });
    const r = await chat.send('json', { maxTokens: 160, seed: 2, temperature: 1, responseFormat: { type: 'json_schema', schema: SCHEMAS.nested! } });
    check(r, SCHEMAS.nested!);
  });
});
