// A chat session that is saved to disk and restored later: the restored session continues exactly
// where the saved one was (same tokens), and each turn computes only its new tokens.
//   node --import tsx examples/session.ts [checkpoint]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { loadModel } from '../lib/index.js';
import { defaultModelPath } from '../lib/default-model.js';

const model = await loadModel(process.argv[2] ?? (await defaultModelPath()));
const dir = mkdtempSync(path.join(os.tmpdir(), 'nemotron-session-'));
const file = path.join(dir, 'conversation.nemo');

const chat = model.chat({ system: 'You are a helpful assistant.', reasoning: false });
const first = await chat.send('My name is Ada.', { maxTokens: 24, seed: 1 });
console.log(`turn 1: ${first.usage.promptTokens} prompt tokens, ${first.usage.cachedTokens} reused`);
await chat.save(file);

const restored = await model.loadChat(file);
const a = await chat.send('What is my name?', { maxTokens: 24, seed: 2 });
const b = await restored.send('What is my name?', { maxTokens: 24, seed: 2 });
console.log(`turn 2: ${a.usage.promptTokens} prompt tokens, ${a.usage.cachedTokens} reused`);
console.log(`restored session continues identically: ${JSON.stringify(a.tokens) === JSON.stringify(b.tokens)}`);
const fork = chat.fork();
console.log(`fork holds ${fork.messages.length} messages`);

chat.dispose();
restored.dispose();
fork.dispose();
await model.close();
rmSync(dir, { recursive: true, force: true });
