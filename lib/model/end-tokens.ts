/**
 * The token ids that end generation: the config's eos_token_id, generation_config.json's, and the
 * tokenizer's end tokens (the chat end token <SPECIAL_12> of Nano 2, and </s>) when they are special.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import type { NativeModelInfo } from '../addon-types.js';
import type { TextTokenizer } from '../tokenizer.js';

export function readEosIds(dir: string, info: NativeModelInfo, tokenizer: TextTokenizer | null): number[] {
  const ids = new Set<number>(info.config.eosTokenIds);
  const gen = path.join(dir, 'generation_config.json');
  if (existsSync(gen)) {
    try {
      const g = JSON.parse(readFileSync(gen, 'utf8')) as { eos_token_id?: number | number[] };
      for (const id of [g.eos_token_id ?? []].flat()) if (Number.isInteger(id)) ids.add(id);
    } catch {
      // generation_config.json is advisory; a broken one must not block loading
    }
  }
  // The chat end token (<SPECIAL_12> for Nano 2) and </s> end generation too.
  for (const name of [tokenizer?.config.eos_token, '</s>', '<SPECIAL_12>']) {
    const s = typeof name === 'string' ? name : (name as { content?: string } | undefined)?.content;
    const id = s && tokenizer ? tokenizer.tokenId(s) : undefined;
    if (id !== undefined && tokenizer!.isSpecial(id)) ids.add(id);
  }
  return [...ids].filter((id) => id >= 0 && id < info.config.vocabSize).sort((a, b) => a - b);
}
