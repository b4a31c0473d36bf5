// A chat turn with reasoning on and a thinking budget: the reasoning streams apart from the answer.
// Runs on the built-in tiny model (random weights: expect gibberish) unless a checkpoint is given:
//   node --import tsx examples/chat.ts [path/to/NVIDIA-Nemotron-Nano-9B-v2]
import { loadModel } from '../lib/index.js';
import { defaultModelPath } from '../lib/default-model.js';

const model = await loadModel(process.argv[2] ?? (await defaultModelPath()));

const stream = model.stream({
  messages: [
    { role: 'system', content: 'You are a concise assistant.' },
    { role: 'user', content: 'Why do hybrid Mamba models keep long contexts cheap?' },
  ],
  reasoning: true, // '/think'; false renders '/no_think'
  thinkingBudget: 64, // reasoning tokens, then the reasoning is closed at the next newline
  maxTokens: 160,
  seed: 1,
});

let section = '';
for await (const ev of stream) {
  if (ev.type === 'reasoning' || ev.type === 'text') {
    if (section !== ev.type) process.stdout.write(`\n[${(section = ev.type)}] `);
    process.stdout.write(ev.text);
  } else if (ev.type === 'toolCall') {
    console.log('\n[tool call]', ev.call);
  } else if (ev.type === 'toolCallError') {
    console.log('\n[tool call that did not parse]', ev.error);
  } else {
    const { usage, finishReason, timings } = ev.result;
    console.log(`\n[done] ${finishReason}; ${usage.reasoningTokens} reasoning + ${usage.completionTokens - usage.reasoningTokens} answer tokens; ${timings.decodeTokensPerSecond.toFixed(0)} tok/s`);
  }
}
await model.close();
