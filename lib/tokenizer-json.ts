/**
 * Hugging Face tokenizer.json pieces for a byte-level BPE tokenizer (the GPT-2 family Nemotron's belongs
 * to), written the same way wherever this package makes one: the tiny model's tokenizer
 * (lib/tiny-model/tokenizer.ts) and the tokenizer rebuilt from a GGUF file's metadata (lib/gguf/reader.ts).
 */

/** A special token that the post-processor adds: its text and id. */
export interface SpecialToken {
  text: string;
  id: number;
}

/** A TemplateProcessing post-processor that puts `bos` before and `eos` after each sequence; null when neither. */
export function specialTokensPostProcessor(bos: SpecialToken | undefined, eos: SpecialToken | undefined): Record<string, unknown> | null {
  if (!bos && !eos) return null;
  const seq = (id: 'A' | 'B', typeId: number): Array<Record<string, unknown>> => [
    ...(bos ? [{ SpecialToken: { id: bos.text, type_id: typeId } }] : []),
    { Sequence: { id, type_id: typeId } },
    ...(eos ? [{ SpecialToken: { id: eos.text, type_id: typeId } }] : []),
  ];
  const specials: Record<string, unknown> = {};
  for (const t of [bos, eos]) if (t) specials[t.text] = { id: t.text, ids: [t.id], tokens: [t.text] };
  return { type: 'TemplateProcessing', single: seq('A', 0), pair: [...seq('A', 0), ...seq('B', 1)], special_tokens: specials };
}

/** A whole tokenizer.json object: byte-level decoding over a BPE model with these tokens and merges. */
export function byteLevelBpeTokenizerJson(p: {
  addedTokens: unknown[];
  preTokenizer: Record<string, unknown>;
  postProcessor: Record<string, unknown> | null;
  vocab: Record<string, number>;
  merges: unknown[];
  ignoreMerges: boolean;
}): Record<string, unknown> {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: p.addedTokens,
    normalizer: null,
    pre_tokenizer: p.preTokenizer,
    post_processor: p.postProcessor,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: p.ignoreMerges,
      vocab: p.vocab,
      merges: p.merges,
    },
  };
}
