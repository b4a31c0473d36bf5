// response_format (json_object, json_schema strict) and tool_choice (required, named) through `serve`,
// called with the `openai` client, streaming and not (issue #15). The AI SDK (`ai`) and
// @langchain/openai are not tested: both declare engines.node >=22, outside this package's range.
import path from 'node:path';

import { Ajv } from 'ajv';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type NemotronModel } from '../../lib/model.js';
import { connect } from '../../lib/remote/index.js';
import { createServer, type NemotronServer } from '../../lib/server/index.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir } from '../helpers.js';

const SCHEMA = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 12 },
    temperature: { type: 'number' },
    unit: { enum: ['celsius', 'fahrenheit'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 5 }, maxItems: 2 },
  },
  required: ['city', 'unit'],
  additionalProperties: false,
};
const TOOLS: OpenAI.Chat.Completions.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 10 } }, required: ['city'] }, strict: true } },
  { type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'] } } },
];

describe('constrained decoding through the server (openai client)', () => {
  const tmp = tempDir('server-grammar');
  const ajv = new Ajv({ strict: false });
  let model: NemotronModel;
  let server: NemotronServer;
  let client: OpenAI;
  let url: string;

  beforeAll(async () => {
    const dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 3 });
    model = await loadModel(dir, { contextLength: 2048, maxSequences: 4 });
    server = await createServer(model, { modelName: 'tiny' });
    url = await server.listen(0, '127.0.0.1');
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await model?.close();
    tmp.cleanup();
  });

  const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Paris as JSON /no_think' }];

  it('response_format json_schema (strict), non-streamed and streamed: the content validates', async () => {
    const validate = ajv.compile(SCHEMA);
    let valid = 0;
    for (let seed = 0; seed < 6; seed++) {
      const r = await client.chat.completions.create({
        model: 'tiny', messages, max_tokens: 150, temperature: 1, seed,
        response_format: { type: 'json_schema', json_schema: { name: 'weather', schema: SCHEMA, strict: true } },
      });
      if (r.choices[0]!.finish_reason === 'length') continue;
      const content = r.choices[0]!.message.content!;
      expect(validate(JSON.parse(content)), content).toBe(true);
      valid++;
    }
    expect(valid).toBeGreaterThanOrEqual(4);
    const stream = await client.chat.completions.create({
      model: 'tiny', messages, max_tokens: 150, temperature: 1, seed: 11, stream: true,
      response_format: { type: 'json_schema', json_schema: { name: 'weather', schema: SCHEMA, strict: true } },
    });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    if (finish === 'stop') expect(validate(JSON.parse(text)), text).toBe(true);
  }, 120_000);

  it('response_format json_object gives a JSON object; a bad schema is a 400', async () => {
    const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 200, temperature: 0.7, seed: 2, response_format: { type: 'json_object' } });
    if (r.choices[0]!.finish_reason === 'stop') expect(typeof JSON.parse(r.choices[0]!.message.content!)).toBe('object');
    await expect(
      client.chat.completions.create({ model: 'tiny', messages, max_tokens: 10, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { type: 'nonsense' } } } } } }),
    ).rejects.toMatchObject({ status: 400 });
  }, 60_000);

  it('tool_choice required and named, streamed and not: tool_calls whose arguments validate', async () => {
    let calls = 0;
    for (let seed = 0; seed < 6; seed++) {
      const named = seed % 2 === 1;
      const tool_choice: OpenAI.Chat.Completions.ChatCompletionToolChoiceOption = named ? { type: 'function', function: { name: 'add' } } : 'required';
      const r = await client.chat.completions.create({ model: 'tiny', messages, tools: TOOLS, tool_choice, max_tokens: 200, temperature: 1, seed });
      const c = r.choices[0]!;
      if (c.finish_reason === 'length') continue;
      expect(c.finish_reason).toBe('tool_calls');
      for (const tc of c.message.tool_calls ?? []) {
        if (tc.type !== 'function') continue;
        if (named) expect(tc.function.name).toBe('add');
        const tool = TOOLS.find((t) => t.type === 'function' && t.function.name === tc.function.name) as { function: { parameters: object } };
        expect(ajv.validate(tool.function.parameters, JSON.parse(tc.function.arguments)), tc.function.arguments).toBe(true);
        calls++;
      }
    }
    expect(calls).toBeGreaterThanOrEqual(3);
    const stream = await client.chat.completions.create({ model: 'tiny', messages, tools: TOOLS, tool_choice: 'required', max_tokens: 200, temperature: 1, seed: 7, stream: true });
    let names = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const tc of chunk.choices[0]?.delta.tool_calls ?? []) names += tc.function?.name ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    if (finish !== 'length') expect(names.length).toBeGreaterThan(0);
  }, 180_000);

  it('connect(): responseFormat and toolChoice go to the server as response_format / tool_choice; results equal the local ones', async () => {
    const remote = await connect(url, { model: 'tiny' });
    try {
      const opts = { messages: [{ role: 'user' as const, content: 'json /no_think' }], maxTokens: 150, temperature: 1, seed: 4, responseFormat: { type: 'json_schema' as const, schema: SCHEMA } };
      const [local, far] = [await model.generate(opts), await remote.generate(opts)];
      expect(far.text).toBe(local.text);
      expect(far.parsed).toEqual(local.parsed);
      expect(far.parseError).toEqual(local.parseError);
      const tools = TOOLS.map((t) => t as { type: 'function'; function: { name: string; parameters?: Record<string, unknown> } });
      const t = { messages: [{ role: 'user' as const, content: 'add /no_think' }], tools, toolChoice: { name: 'add' }, maxTokens: 150, temperature: 1, seed: 5 };
      const [lt, rt] = [await model.generate(t), await remote.generate(t)];
      expect(rt.toolCalls).toEqual(lt.toolCalls);
    } finally {
      await remote.close();
    }
  }, 60_000);
});
