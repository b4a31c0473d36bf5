// Generate a completion, then stream one. Runs on the built-in tiny model (random weights) unless a
// checkpoint folder is given:   node --import tsx examples/generate.ts [path/to/NVIDIA-Nemotron-Nano-9B-v2]
import { loadModel } from '../lib/index.js';
import { defaultModelPath } from '../lib/default-model.js';

const model = await loadModel(process.argv[2] ?? (await defaultModelPath()));
console.log(`${model.info.config.hybridOverridePattern}: ${model.info.parameterCount.toLocaleString('en-US')} parameters`);

const r = await model.generate({ prompt: 'The capital of France is', maxTokens: 16 });
console.log(JSON.stringify(r.text), r.finishReason, r.usage);

for await (const ev of model.stream({ prompt: 'Once upon a time', maxTokens: 16, temperature: 0.7, seed: 1 })) {
  if (ev.type === 'text') process.stdout.write(ev.text);
}
process.stdout.write('\n');
await model.close();
