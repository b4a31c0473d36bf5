/**
 * The checkpoint's own tokenizer (tokenizer.json + tokenizer_config.json), run by @huggingface/tokenizers:
 * a maintained, dependency-free JS implementation of Hugging Face's tokenizers (byte-level BPE,
 * added/special tokens, post-processors), so ids match what transformers and vLLM produce.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

import { ModelLoadError } from './errors.js';

export interface TokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (cause) {
    throw new ModelLoadError('ERR_INVALID_CONFIG', `${path.basename(file)} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

function longestToken(json: Record<string, unknown>): number {
  let longest = 0;
  const vocab = (json.model as { vocab?: unknown } | undefined)?.vocab;
  if (vocab && typeof vocab === 'object' && !Array.isArray(vocab)) {
    for (const piece of Object.keys(vocab)) longest = Math.max(longest, Buffer.byteLength(piece));
  } else if (Array.isArray(vocab)) {
    for (const e of vocab) if (Array.isArray(e) && typeof e[0] === 'string') longest = Math.max(longest, Buffer.byteLength(e[0]));
  } else return 0;
  for (const t of (json.added_tokens ?? []) as Array<{ content?: unknown }>) {
    if (typeof t.content === 'string') longest = Math.max(longest, Buffer.byteLength(t.content));
  }
  return longest;
}

export class TextTokenizer {
  private readonly tok: Tokenizer;
  private readonly specialIds: Set<number>;
  readonly config: Record<string, unknown>;
  /** The files it was built from (a worker thread builds its own copy from them). */
  readonly files: TokenizerFiles;
  /**
   * An upper bound on the UTF-8 bytes one token stands for (its vocabulary text's length; byte-level
   * and byte-fallback spellings only overstate it), 0 when unknown. A text of B bytes is at least
   * B / longestTokenBytes tokens: enough to refuse an input that cannot fit before tokenizing it.
   */
  readonly longestTokenBytes: number;

  private constructor(files: TokenizerFiles) {
    this.tok = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
    this.config = files.tokenizerConfig;
    this.files = files;
    this.longestTokenBytes = longestToken(files.tokenizerJson);
    const added = (files.tokenizerJson.added_tokens ?? []) as Array<{ id: number; special?: boolean }>;
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
  }

  /**
   * Throws ModelLoadError (ERR_INVALID_CONFIG) when the tokenizer can produce an id the model has no row for
   * (an added token or a vocabulary entry at or beyond `vocabSize`): such a prompt could never run.
   */
  checkVocabulary(vocabSize: number): void {
    const beyond = (what: string, token: unknown, id: unknown): ModelLoadError =>
      new ModelLoadError('ERR_INVALID_CONFIG', `tokenizer.json: ${what} ${JSON.stringify(token)} has id ${String(id)}, outside the model's vocabulary (vocab_size ${vocabSize})`);
    const added = this.files.tokenizerJson.added_tokens;
    if (Array.isArray(added)) {
      for (const t of added as Array<{ id?: unknown; content?: unknown }>) {
        if (typeof t?.id !== 'number' || !Number.isInteger(t.id) || t.id < 0 || t.id >= vocabSize) throw beyond('added token', t?.content, t?.id);
      }
    }
    const vocab = (this.files.tokenizerJson.model as { vocab?: unknown } | undefined)?.vocab;
    if (vocab && typeof vocab === 'object' && !Array.isArray(vocab)) {
      for (const [token, id] of Object.entries(vocab as Record<string, unknown>)) {
        if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) throw beyond('token', token, id);
      }
    }
  }

  /** Reads tokenizer.json (+ tokenizer_config.json when present) from a checkpoint folder; null if absent. */
  static fromDir(dir: string): TextTokenizer | null {
    const tj = path.join(dir, 'tokenizer.json');
    if (!existsSync(tj)) return null;
    const tc = path.join(dir, 'tokenizer_config.json');
    try {
      return new TextTokenizer({ tokenizerJson: readJson(tj), tokenizerConfig: existsSync(tc) ? readJson(tc) : {} });
    } catch (cause) {
      if (cause instanceof ModelLoadError) throw cause;
      throw new ModelLoadError('ERR_INVALID_CONFIG', `tokenizer.json could not be loaded: ${(cause as Error).message}`, { cause });
    }
  }

  /** Builds a tokenizer from in-memory tokenizer.json / tokenizer_config.json objects (e.g. made from GGUF metadata). */
  static fromFiles(files: TokenizerFiles): TextTokenizer {
    try {
      return new TextTokenizer(files);
    } catch (cause) {
      throw new ModelLoadError('ERR_INVALID_CONFIG', `the tokenizer could not be built: ${(cause as Error).message}`, { cause });
    }
  }

  encode(text: string, addSpecialTokens: boolean): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = false): string {
    if (ids.length === 0) return ''; // the library rejects an empty list
    return this.tok.decode(Array.from(ids), { skip_special_tokens: skipSpecialTokens });
  }

  /** The id of a token string (special or ordinary), or undefined. */
  tokenId(token: string): number | undefined {
    const ids = this.tok.encode(token, { add_special_tokens: false }).ids;
    return ids.length === 1 ? ids[0] : undefined;
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  private idToToken: Map<number, string> | undefined;
  private byteLevel: boolean | undefined;

  /**
   * The bytes a token stands for: its vocabulary string through the byte-level alphabet (GPT-2 /
   * ByteLevel tokenizers such as Nemotron's), `<0xNN>` byte-fallback tokens as their byte, added tokens as
   * their UTF-8; otherwise the UTF-8 of its decoded text. A token that holds part of a character has
   * bytes that are not UTF-8 on their own (what `decode([id])` shows as U+FFFD).
   */
  tokenBytes(id: number): Uint8Array {
    if (!this.idToToken) {
      const map = new Map<number, string>();
      const vocab = (this.files.tokenizerJson.model as { vocab?: unknown } | undefined)?.vocab;
      if (vocab && typeof vocab === 'object' && !Array.isArray(vocab)) for (const [t, i] of Object.entries(vocab as Record<string, number>)) map.set(i, t);
      const added = (this.files.tokenizerJson.added_tokens ?? []) as Array<{ id: number; content: string }>;
      for (const t of added) map.set(t.id, `\u0000added:${t.content}`);
      this.idToToken = map;
      const types = (d: unknown): string[] => {
        const o = d as { type?: string; decoders?: unknown[] } | null | undefined;
        return o ? [o.type ?? '', ...(o.decoders ?? []).flatMap(types)] : [];
      };
      this.byteLevel = types(this.files.tokenizerJson.decoder).includes('ByteLevel');
    }
    const token = this.idToToken.get(id);
    if (token === undefined) return Buffer.from(this.decode([id]), 'utf8');
    if (token.startsWith('\u0000added:')) return Buffer.from(token.slice(7), 'utf8');
    const fallback = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
    if (fallback) return Uint8Array.of(parseInt(fallback[1]!, 16));
    if (this.byteLevel) {
      const out: number[] = [];
      for (const ch of token) {
        const b = UNICODE_TO_BYTE.get(ch);
        if (b === undefined) return Buffer.from(this.decode([id]), 'utf8');
        out.push(b);
      }
      return Uint8Array.from(out);
    }
    return Buffer.from(this.decode([id]), 'utf8');
  }
}

/** GPT-2's bytes_to_unicode, inverted: the byte-level alphabet's characters to the bytes they stand for. */
const UNICODE_TO_BYTE: Map<string, number> = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return new Map(bs.map((b, i) => [String.fromCodePoint(cs[i]!), b]));
})();

/**
 * Turns a growing list of generated ids into text pieces that are always whole UTF-8: a character
 * split across tokens is held back until its last byte arrives. Decodes only a short window (the
 * tokens since the last emitted piece, plus the piece before them as context), so the cost per
 * token stays flat.
 */
export class IncrementalDecoder {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly tokenizer: TextTokenizer) {}

  /** Adds one token; returns the new complete text (possibly empty). Special (control) tokens have no text. */
  push(id: number): string {
    this.ids.push(id);
    const prefixText = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), true);
    const fullText = this.tokenizer.decode(this.ids.slice(this.prefixOffset), true);
    if (fullText.length > prefixText.length && !fullText.endsWith('\uFFFD')) {
      const piece = fullText.slice(prefixText.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return piece;
    }
    return '';
  }

  /** Whatever is still held back (an incomplete character at the very end is emitted as U+FFFD). */
  flush(): string {
    const prefixText = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), true);
    const fullText = this.tokenizer.decode(this.ids.slice(this.prefixOffset), true);
    this.prefixOffset = this.readOffset = this.ids.length;
    return fullText.slice(prefixText.length);
  }
}
