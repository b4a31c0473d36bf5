/**
 * The client-side tokenizer and chat template of a remote model, for what must be rendered here: the
 * thinking budget (the prompt goes to /v1/completions as token ids), tokenize(), applyChatTemplate().
 * From a checkpoint folder (tokenizer.json + tokenizer_config.json; no weights needed), a .gguf file
 * (its tokenizer metadata) or `hf:owner/name[@rev]` (only those two files are downloaded).
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

import { ChatTemplate } from '../chat/template.js';
import { ModelLoadError } from '../errors.js';
import { hasGgufTokenizer, readGgufMetadata, tokenizerFromGguf } from '../gguf/reader.js';
import { isHubSpec, parseHubSpec, pullModel, type HubOptions } from '../hub/index.js';
import { TextTokenizer } from '../tokenizer.js';

export interface ClientTokenizer {
  tokenizer: TextTokenizer;
  template: ChatTemplate | null;
  /** Where it came from (a folder or file). */
  source: string;
}

export async function loadClientTokenizer(spec: string, hub: HubOptions = {}): Promise<ClientTokenizer> {
  let where = spec;
  if (isHubSpec(spec)) {
    const ref = parseHubSpec(spec);
    if (ref.file?.endsWith('.gguf')) {
      where = (await pullModel(spec, hub)).path;
    } else {
      const base = `${ref.repo}${ref.revision ? `@${ref.revision}` : ''}`;
      const tj = await pullModel(base, { ...hub, file: 'tokenizer.json' });
      await pullModel(base, { ...hub, file: 'tokenizer_config.json' }).catch(() => undefined);
      where = path.dirname(tj.path);
    }
  }
  const resolved = path.resolve(where);
  if (!existsSync(resolved)) throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `tokenizer: no such folder or file ${resolved}`);
  let tokenizer: TextTokenizer | null;
  if (statSync(resolved).isFile() && resolved.endsWith('.gguf')) {
    const meta = readGgufMetadata(resolved);
    tokenizer = hasGgufTokenizer(meta) ? TextTokenizer.fromFiles(tokenizerFromGguf(meta)) : null;
  } else {
    tokenizer = TextTokenizer.fromDir(statSync(resolved).isFile() ? path.dirname(resolved) : resolved);
  }
  if (!tokenizer) throw new ModelLoadError('ERR_INVALID_CHECKPOINT', `tokenizer: ${resolved} has no tokenizer (tokenizer.json, or GGUF tokenizer metadata)`);
  return { tokenizer, template: ChatTemplate.fromTokenizerConfig(tokenizer.config), source: resolved };
}
