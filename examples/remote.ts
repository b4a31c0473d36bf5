// The same code on a local model and on remote replicas: three `serve` replicas in-process (CPU fleet
// stand-ins), one connect([...]) client that keeps each conversation on its replica, a thinking budget
// over /v1/completions, and a replica shut down between turns. Runs on the built-in tiny model (random
// weights: expect gibberish) unless a checkpoint folder is given:
//   node --import tsx examples/remote.ts [path/to/NVIDIA-Nemotron-Nano-9B-v2]
// Against vLLM / SGLang / NIM: connect('http://host:8000', { model, tokenizer: 'hf:nvidia/NVIDIA-Nemotron-Nano-9B-v2' }).
import { connect, loadModel, type TextModel } from '../lib/index.js';
import { defaultModelPath } from '../lib/default-model.js';
import { createServer } from '../lib/server/index.js';

const checkpoint = process.argv[2] ?? (await defaultModelPath());

// Written once against TextModel: runs on the local model and on the remote one.
async function conversation(model: TextModel, label: string): Promise<void> {
  const chat = model.chat({ system: 'You are a concise assistant.', reasoning: true });
  for (const question of ['What is a state space model?', 'And why is its state a fixed size?']) {
    const r = await chat.send(question, { maxTokens: 560, thinkingBudget: 16, temperature: 0 });
    console.log(`[${label}] ${r.usage.reasoningTokens} reasoning + ${r.usage.completionTokens - r.usage.reasoningTokens} answer tokens, ${r.usage.cachedTokens}/${r.usage.promptTokens} prompt tokens cached: ${JSON.stringify(r.text.slice(0, 40))}`);
  }
}

const replicas = await Promise.all([0, 1, 2].map(async () => {
  const model = await loadModel(checkpoint, { threads: 1 });
  const server = await createServer(model, { modelName: 'nemotron' });
  return { model, server, url: await server.listen(0) };
}));

const local = replicas[0]!.model;
await conversation(local, 'local');

const remote = await connect(replicas.map((r) => r.url), { model: 'nemotron', tokenizer: checkpoint });
await conversation(remote, 'remote');

// A session keeps its replica; when that replica goes away, the next turn runs on another one.
const chat = remote.chat({ reasoning: false });
await chat.send('Hello', { maxTokens: 8 });
const home = remote.endpointFor(chat.sessionId);
await replicas.find((r) => r.url === home)!.server.close();
const after = await chat.send('Still there?', { maxTokens: 8 });
console.log(`session moved from ${home} to ${remote.endpointFor(chat.sessionId)}: ${chat.messages.length} messages kept, ${after.usage.cachedTokens} tokens cached (a cache miss), failovers ${remote.stats().failovers}`);

await remote.close();
for (const r of replicas) {
  await r.server.close();
  await r.model.close();
}
