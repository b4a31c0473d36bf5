// An OpenAI-compatible server in-process, called with the official `openai` client: one chat completion,
// then one streamed. Runs on the built-in tiny model (random weights: expect gibberish) unless a
// checkpoint folder is given:   node --import tsx examples/server.ts [path/to/NVIDIA-Nemotron-Nano-9B-v2]
// (From the command line: npx nemotron-node serve --model PATH --port 8080.)
import OpenAI from 'openai';

import { loadModel } from '../lib/index.js';
import { defaultModelPath } from '../lib/default-model.js';
import { createServer } from '../lib/server/index.js';

const model = await loadModel(process.argv[2] ?? (await defaultModelPath()));
const server = await createServer(model, { modelName: 'nemotron' });
const url = await server.listen(0); // any free port on 127.0.0.1
console.log(`listening on ${url}`);

const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused' });
const messages = [
  { role: 'system' as const, content: 'You are a concise assistant.' },
  { role: 'user' as const, content: 'Why do hybrid Mamba models keep long contexts cheap?' },
];

// `reasoning` and `thinking_budget` are this server's extensions (chat_template_kwargs.enable_thinking works too).
const extensions = { reasoning: true, thinking_budget: 32 } as Record<string, unknown>;
const r = await client.chat.completions.create({ model: 'nemotron', messages, max_tokens: 64, seed: 1, ...extensions });
const choice = r.choices[0]!;
const message = choice.message as typeof choice.message & { reasoning_content?: string | null };
console.log('[reasoning]', JSON.stringify(message.reasoning_content));
console.log('[answer]', JSON.stringify(message.content));
console.log(`chat.completion: finish=${choice.finish_reason}; ${r.usage!.prompt_tokens} prompt + ${r.usage!.completion_tokens} completion tokens`);

const stream = await client.chat.completions.create({ model: 'nemotron', messages, max_tokens: 64, seed: 1, stream: true, stream_options: { include_usage: true }, ...extensions });
let chunks = 0;
for await (const chunk of stream) {
  chunks++;
  const delta = chunk.choices[0]?.delta as { content?: string | null; reasoning_content?: string } | undefined;
  if (delta?.reasoning_content) process.stdout.write(delta.reasoning_content);
  if (delta?.content) process.stdout.write(delta.content);
  if (chunk.usage) process.stdout.write(`\nstreamed ${chunks} chunks; usage ${JSON.stringify(chunk.usage)}\n`);
}

await server.close();
await model.close();
