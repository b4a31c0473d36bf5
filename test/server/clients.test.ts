// Structured output through the clients people already use (issue #15), against a real `serve` on the
// random tiny model: the grammar constraint is what makes every answer parse and validate. The Vercel AI
// SDK (ai 4.x + @ai-sdk/openai-compatible 0.2.x) and LangChain (@langchain/openai 0.5.x) are the majors
// that still support Node 20 (their newest majors need Node 22). Reasoning is switched off with
// Nemotron's own `/no_think` system keyword: with reasoning on, the constraint applies after `</think>`,
// which a random model may not reach within a test's token budget.
import path from 'node:path';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI } from '@langchain/openai';
import { generateObject, generateText, tool } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';

import { loadModel, type NemotronModel } from '../../lib/model.js';
import { createServer, type NemotronServer } from '../../lib/server/index.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir } from '../helpers.js';

// No free-form strings: a random model never closes one (the grammar keeps a started string valid, it
// does not end it), and length-bounded strings count bytes where zod counts UTF-16 units.
const person = z.object({
  age: z.number().int(),
  role: z.enum(['admin', 'user', 'guest']),
  admin: z.boolean(),
  scores: z.array(z.number().int()).max(3),
});

describe('real clients against serve, constrained', () => {
  const tmp = tempDir('clients');
  let model: NemotronModel;
  let server: NemotronServer;
  let url: string;
  beforeAll(async () => {
    const dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 17 });
    model = await loadModel(dir, { threads: 2, maxSequences: 4 });
    server = await createServer(model, { modelName: 'tiny' });
    url = await server.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await server.close();
    await model.close();
    tmp.cleanup();
  });

  it('AI SDK generateObject with a zod schema, and toolChoice required', async () => {
    const provider = createOpenAICompatible({ name: 'nemotron', baseURL: `${url}/v1`, apiKey: 'unused' });
    const chat = provider.chatModel('tiny', { supportsStructuredOutputs: true } as never) as Parameters<typeof generateObject>[0]['model'];
    for (let seed = 0; seed < 3; seed++) {
      const { object } = await generateObject({ model: chat, schema: person, system: '/no_think', prompt: 'Describe a user.', maxTokens: 200, seed, maxRetries: 0 });
      expect(person.parse(object)).toEqual(object);
    }
    const r = await generateText({
      model: chat,
      system: '/no_think',
      prompt: 'What is the weather in Paris?',
      tools: { weather: tool({ description: 'Weather for a city', parameters: z.object({ city: z.enum(['Paris', 'Rome']), days: z.number().int() }) }) },
      toolChoice: 'required',
      maxTokens: 120,
      maxRetries: 0,
    });
    expect(r.toolCalls.length).toBeGreaterThan(0);
    expect(r.toolCalls[0]!.toolName).toBe('weather');
    expect(['Paris', 'Rome']).toContain((r.toolCalls[0]!.args as { city: unknown }).city);
  });

  it('LangChain withStructuredOutput, json schema and function calling', async () => {
    const llm = new ChatOpenAI({ model: 'tiny', apiKey: 'unused', configuration: { baseURL: `${url}/v1` }, maxRetries: 0, maxTokens: 200, temperature: 0 });
    for (const method of ['jsonSchema', 'functionCalling'] as const) {
      const structured = llm.withStructuredOutput(person, { method, name: 'person' });
      const out = await structured.invoke([
        ['system', '/no_think'],
        ['human', 'Describe a user.'],
      ]);
      expect(person.parse(out)).toEqual(out);
    }
  });
});
