/**
 * A real (if small) byte-level BPE tokenizer for tiny Nemotron-H checkpoints.
 *
 * Layout of the vocabulary (Nemotron Nano 2 ids where known, docs/architecture.md §6):
 *   0 `<unk>`, 1 `<s>`, 2 `</s>`, 3..9 `<SPECIAL_3>`..`<SPECIAL_9>` (placeholders), 10 `<SPECIAL_10>` (system header),
 *   11 `<SPECIAL_11>` (user/assistant header), 12 `<SPECIAL_12>` (chat EOS), 13.. `<think>`, `</think>`, `<TOOLCALL>`,
 *   `</TOOLCALL>`, `<AVAILABLE_TOOLS>`, `</AVAILABLE_TOOLS>`, `<TOOL_RESPONSE>`, `</TOOL_RESPONSE>` (added, not special),
 *   then the 256 byte symbols (GPT-2 byte-to-unicode alphabet, in byte order), then merged tokens in merge order.
 * Merges are learned deterministically by a plain BPE training loop over the embedded sample text below, using the
 * same pre-tokenizer split as the ByteLevel pre-tokenizer (`use_regex: true`) applies at encode time.
 */
import { byteLevelBpeTokenizerJson, specialTokensPostProcessor } from '../tokenizer-json.js';

export interface AddedTokenSpec {
  id: number;
  content: string;
  special: boolean;
}

/** Added tokens, in id order. */
export const ADDED_TOKENS: readonly AddedTokenSpec[] = [
  { id: 0, content: '<unk>', special: true },
  { id: 1, content: '<s>', special: true },
  { id: 2, content: '</s>', special: true },
  ...[3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((n) => ({ id: n, content: `<SPECIAL_${n}>`, special: true })),
  { id: 13, content: '<think>', special: false },
  { id: 14, content: '</think>', special: false },
  { id: 15, content: '<TOOLCALL>', special: false },
  { id: 16, content: '</TOOLCALL>', special: false },
  { id: 17, content: '<AVAILABLE_TOOLS>', special: false },
  { id: 18, content: '</AVAILABLE_TOOLS>', special: false },
  { id: 19, content: '<TOOL_RESPONSE>', special: false },
  { id: 20, content: '</TOOL_RESPONSE>', special: false },
];

/** Ids of the tokens the engine and chat layer care about. */
export const TOKEN_IDS = {
  unk: 0,
  bos: 1,
  eos: 2,
  systemHeader: 10,
  turnHeader: 11,
  chatEos: 12,
  thinkStart: 13,
  thinkEnd: 14,
  toolCallStart: 15,
  toolCallEnd: 16,
  availableToolsStart: 17,
  availableToolsEnd: 18,
  toolResponseStart: 19,
  toolResponseEnd: 20,
} as const;

/** First id of the 256 byte symbols. */
export const FIRST_BYTE_TOKEN_ID = ADDED_TOKENS.length;

/** Default total vocabulary size of the generated tokenizer (added + byte + merged tokens). */
export const DEFAULT_TOKENIZER_VOCAB_SIZE = 512;

/** The GPT-2 / ByteLevel pre-tokenizer split pattern (what `use_regex: true` applies). */
const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** byte -> printable character, GPT-2's reversible byte-to-unicode table. */
export function byteToUnicodeTable(): string[] {
  const table = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return table;
}

/**
 * Embedded training text: English prose, some code, and several other languages/scripts, so that merges cover
 * common English and multi-byte UTF-8 sequences (accents, CJK, emoji) get both merged and unmerged paths.
 */
export const SAMPLE_TEXT = String.raw`The quick brown fox jumps over the lazy dog, and then it runs back into the forest.
A small model is not a smart model, but it is a fast one. We use it to test the engine, the tokenizer and the
command line tool. When the numbers match the reference, we know that the kernels are doing the right thing.
The state of a recurrent layer is carried from one token to the next, while an attention layer looks back at
every token that came before it. In this hybrid design most of the layers are state space layers, and only a
few of them are attention layers. That is why the memory that a long conversation needs grows so slowly.
It was a bright cold day in April, and the clocks in the town were striking the hour. The children ran out of
the school and into the street, where the snow had melted into small grey rivers that ran along the road.
She opened the window and looked at the garden. The trees were green again, the birds were singing, and there
was the smell of fresh bread coming from the kitchen of the house next door. "Good morning," she said to the
old man who lived there. "Is it going to rain today?" He laughed and said that he did not know, but that he
would take his umbrella with him, just in case. They talked for a while about the weather, the news and the
price of coffee, and then she went back inside to finish her work before the meeting at ten o'clock.
Please read the following instructions carefully before you begin. First, install the package with your
package manager. Second, download the model files into a local folder. Third, run the example script and
check that the output looks reasonable. If something goes wrong, read the error message: it tells you which
option was wrong, what value was expected and what value was given. You can also open an issue on the project
page, and we will try to help you as soon as we can. Thank you for reading this far, and have a nice day!
There are 24 hours in a day, 7 days in a week, and 365 days in most years. The year 2024 had 366 days. In 1969
people walked on the moon for the first time; it took about 3 days to get there and the trip cost a lot of money.
Questions and answers: What is the capital of France? The capital of France is Paris. What is two plus two? Two
plus two is four. Why is the sky blue? Because the air scatters blue light more than red light. Who wrote this
text? A person who wanted a tokenizer with a few hundred merges that still works on real sentences.

function add(a, b) {
  return a + b;
}

export async function loadModel(path, options = {}) {
  const config = JSON.parse(await readFile(path + '/config.json', 'utf8'));
  if (config.model_type !== 'nemotron_h') {
    throw new Error('unsupported model type: ' + config.model_type);
  }
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const layer = { index: i, type: config.hybrid_override_pattern[i] };
    console.log(layer.index, layer.type);
  }
  return { config, options };
}

def softplus(x):
    return math.log1p(math.exp(x)) if x < 20 else x

class Counter:
    def __init__(self):
        self.count = 0

    def increment(self, step=1):
        self.count += step
        return self.count

for i in range(10):
    print(f"step {i}: value = {i * i}")

SELECT name, count(*) FROM users WHERE active = true GROUP BY name ORDER BY name;
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}

Le café est très bon, mais le thé à la menthe est encore meilleur. Où est la gare, s'il vous plaît ?
Nous étions à la fenêtre, et la mer était calme ; les élèves répétaient leurs leçons de français.
Über den Wolken muss die Freiheit wohl grenzenlos sein. Die Straße ist nass, und die Bäume sind grün.
Mädchen und Jungen spielen im Schnee; die Größe des Gebäudes überrascht alle Besucher aus München.
El niño comió una manzana en el jardín. ¿Dónde está la biblioteca? ¡Qué día tan bonito hace hoy!
A canção da manhã é suave, e a informação chegou às três horas. Não há pão na padaria hoje.
Ελληνικά: καλημέρα, τι κάνεις; Русский: привет, как дела? Сегодня хорошая погода, и мы идём гулять.
日本語の文章も少し入れておきます。今日はいい天気ですね。東京は大きな都市です。
中文：我们今天学习机器学习。模型很小，但是分词器是真的。你好，世界！北京和上海都是大城市。
한국어: 안녕하세요, 만나서 반갑습니다. 오늘은 날씨가 좋네요.
Emoji: 🙂 😀 🚀 🎉 👍 ❤️ 🌍 🐍 ☕ — they are encoded as four bytes each, most of the time. 🙂🚀🎉
Math: α + β = γ, ∑ x² ≤ ∞, π ≈ 3.14159, 10 € is about 11 $ or 9 £; temperatures range from −5 °C to 30 °C.
The end of the sample text is here. The tokenizer learns its merges from the words above, and the words that
appear most often become single tokens: the, and, to, of, in, is, that, it, for, on, with, as, was, at, by.
`;

interface TrainResult {
  merges: [string, string][];
  tokens: string[]; // merged tokens, in order of creation (excluding duplicates of existing tokens)
}

/**
 * Plain BPE training on pre-tokenized, byte-mapped words. Each step merges the most frequent adjacent pair
 * (ties: lexicographically smallest pair), stops at `maxNewTokens` new tokens or when no pair occurs twice.
 */
function trainBpe(text: string, maxNewTokens: number, forbidden: ReadonlySet<string>): TrainResult {
  const b2u = byteToUnicodeTable();
  const enc = new TextEncoder();
  const wordCounts = new Map<string, number>();
  for (const m of text.matchAll(PRETOKENIZE)) {
    const w = m[0];
    wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
  }
  const words: { syms: string[]; count: number }[] = [];
  for (const [w, count] of wordCounts) {
    const syms = Array.from(enc.encode(w), (b) => b2u[b] as string);
    words.push({ syms, count });
  }
  const existing = new Set<string>(b2u);
  const merges: [string, string][] = [];
  const tokens: string[] = [];
  const SEP = '\u0000'; // never occurs in the byte alphabet
  while (tokens.length < maxNewTokens) {
    const pairCounts = new Map<string, number>();
    for (const { syms, count } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const key = syms[i] + SEP + syms[i + 1];
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + count);
      }
    }
    let bestKey = '';
    let bestCount = 1; // a merge must occur at least twice
    for (const [key, c] of pairCounts) {
      if (c > bestCount || (c === bestCount && bestKey !== '' && key < bestKey)) {
        const [a, b] = key.split(SEP) as [string, string];
        if (forbidden.has(a + b)) continue;
        bestKey = key;
        bestCount = c;
      }
    }
    if (bestKey === '') break;
    const [a, b] = bestKey.split(SEP) as [string, string];
    const merged = a + b;
    merges.push([a, b]);
    if (!existing.has(merged)) {
      existing.add(merged);
      tokens.push(merged);
    }
    for (const w of words) {
      const s = w.syms;
      if (s.length < 2) continue;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(merged);
          i++;
        } else {
          out.push(s[i] as string);
        }
      }
      w.syms = out;
    }
  }
  return { merges, tokens };
}

/**
 * Chat template in Nemotron Nano 2's format (docs/architecture.md §6). Uses only standard Jinja: for, if, set,
 * namespace, slicing, `in`, string replace/strip/split, the tojson filter and the string/defined/none tests.
 * Variables: messages, tools (optional), add_generation_prompt, continue_final_message (optional).
 */
export const CHAT_TEMPLATE = String.raw`{#- Nemotron Nano 2 style chat template (tiny-model maker) -#}
{%- set ns = namespace(thinking=true, sys='', start=0, end=messages | length) -%}
{#- Reasoning switch: scan system and user messages in order; the last /think or /no_think wins. -#}
{%- for m in messages -%}
  {%- if (m['role'] == 'system' or m['role'] == 'user') and m['content'] is string -%}
    {%- if '/think' in m['content'].split('/no_think')[-1] -%}
      {%- set ns.thinking = true -%}
    {%- elif '/no_think' in m['content'] -%}
      {%- set ns.thinking = false -%}
    {%- endif -%}
  {%- endif -%}
{%- endfor -%}
{%- if messages | length > 0 and messages[0]['role'] == 'system' -%}
  {%- if messages[0]['content'] is string -%}
    {%- set ns.sys = messages[0]['content'].replace('/think', '').replace('/no_think', '').strip() -%}
  {%- endif -%}
  {%- set ns.start = 1 -%}
{%- endif -%}
{%- if messages | length > ns.start and messages[-1]['role'] == 'assistant' -%}
  {%- set ns.end = ns.end - 1 -%}
{%- endif -%}
{{- '<SPECIAL_10>System\n' + ns.sys -}}
{%- if tools -%}
  {%- if ns.sys != '' -%}
    {{- '\n\n' -}}
  {%- endif -%}
  {{- 'You can use the following tools to assist the user if required:\n<AVAILABLE_TOOLS>[' -}}
  {%- for tool in tools -%}
    {%- if tool['function'] is defined -%}
      {{- tool['function'] | tojson -}}
    {%- else -%}
      {{- tool | tojson -}}
    {%- endif -%}
    {%- if not loop.last -%}
      {{- ', ' -}}
    {%- endif -%}
  {%- endfor -%}
  {{- ']</AVAILABLE_TOOLS>\n\n' -}}
  {{- 'To call tools, reply with one list in this format:\n' -}}
  {{- '<TOOLCALL>[{"name": "first_tool", "arguments": {"arg": "value"}}, {"name": "second_tool", "arguments": {}}]</TOOLCALL>\n\n' -}}
  {{- 'Tool results come back in a user turn in this format:\n' -}}
  {{- '<TOOL_RESPONSE>[first_result, second_result]</TOOL_RESPONSE>\n\n' -}}
  {{- 'After reading the results you may call more tools, fix a failed call, or answer the user.' -}}
{%- endif -%}
{{- '\n' -}}
{%- set conv = messages[ns.start:ns.end] -%}
{%- for m in conv -%}
  {%- if m['content'] is string -%}
    {%- set content = m['content'] -%}
  {%- else -%}
    {%- set content = '' -%}
  {%- endif -%}
  {%- if m['role'] == 'user' -%}
    {{- '<SPECIAL_11>User\n' + content.replace('/think', '').replace('/no_think', '').strip() + '\n' -}}
  {%- elif m['role'] == 'tool' -%}
    {%- if loop.first or conv[loop.index0 - 1]['role'] != 'tool' -%}
      {{- '<SPECIAL_11>User\n<TOOL_RESPONSE>[' -}}
    {%- else -%}
      {{- ', ' -}}
    {%- endif -%}
    {{- content -}}
    {%- if loop.last or conv[loop.index0 + 1]['role'] != 'tool' -%}
      {{- ']</TOOL_RESPONSE>\n' -}}
    {%- endif -%}
  {%- elif m['role'] == 'assistant' -%}
    {%- if '</think>' in content -%}
      {%- set content = content.split('</think>')[-1] -%}
    {%- endif -%}
    {%- set content = content.strip() -%}
    {{- '<SPECIAL_11>Assistant\n' + content -}}
    {%- if m['tool_calls'] is defined and m['tool_calls'] -%}
      {%- if content != '' -%}
        {{- '\n' -}}
      {%- endif -%}
      {{- '<TOOLCALL>[' -}}
      {%- for call in m['tool_calls'] -%}
        {%- if call['function'] is defined -%}
          {%- set fn = call['function'] -%}
        {%- else -%}
          {%- set fn = call -%}
        {%- endif -%}
        {{- '{"name": ' + (fn['name'] | tojson) + ', "arguments": ' -}}
        {%- if fn['arguments'] is string -%}
          {{- fn['arguments'] -}}
        {%- elif fn['arguments'] is defined -%}
          {{- fn['arguments'] | tojson -}}
        {%- else -%}
          {{- '{}' -}}
        {%- endif -%}
        {{- '}' -}}
        {%- if not loop.last -%}
          {{- ', ' -}}
        {%- endif -%}
      {%- endfor -%}
      {{- ']</TOOLCALL>' -}}
    {%- endif -%}
    {{- '\n<SPECIAL_12>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if ns.end < messages | length -%}
  {#- trailing assistant message: a prefill the model continues -#}
  {{- '<SPECIAL_11>Assistant\n' -}}
  {%- if ns.thinking -%}
    {{- '<think>\n' -}}
  {%- else -%}
    {{- '<think></think>' -}}
  {%- endif -%}
  {%- if messages[-1]['content'] is string -%}
    {{- messages[-1]['content'] -}}
  {%- endif -%}
  {%- if not add_generation_prompt and not continue_final_message -%}
    {{- '\n<SPECIAL_12>\n' -}}
  {%- endif -%}
{%- elif add_generation_prompt -%}
  {{- '<SPECIAL_11>Assistant\n' -}}
  {%- if ns.thinking -%}
    {{- '<think>\n' -}}
  {%- else -%}
    {{- '<think></think>' -}}
  {%- endif -%}
{%- endif -%}
`;

export interface TokenizerFiles {
  /** parsed tokenizer.json */
  tokenizerJson: Record<string, unknown>;
  /** parsed tokenizer_config.json */
  tokenizerConfig: Record<string, unknown>;
  /** parsed special_tokens_map.json */
  specialTokensMap: Record<string, unknown>;
  /** number of token ids the tokenizer can produce (= model vocab rows it needs) */
  vocabSize: number;
}

export interface BuildTokenizerOptions {
  /** total target vocabulary (added + 256 bytes + merges); fewer if the sample text runs out of pairs. Default 512. */
  vocabSize?: number;
  /** tokenizer_config model_max_length. Default 4096. */
  modelMaxLength?: number;
}

const cache = new Map<number, TrainResult>();

/** Builds tokenizer.json / tokenizer_config.json / special_tokens_map.json contents. Deterministic. */
export function buildTokenizer(options: BuildTokenizerOptions = {}): TokenizerFiles {
  const target = options.vocabSize ?? DEFAULT_TOKENIZER_VOCAB_SIZE;
  const minimum = ADDED_TOKENS.length + 256;
  if (!Number.isSafeInteger(target) || target < minimum) {
    throw new RangeError(`tokenizer vocabSize must be an integer >= ${minimum}, got ${String(target)}`);
  }
  let trained = cache.get(target);
  if (trained === undefined) {
    trained = trainBpe(SAMPLE_TEXT, target - minimum, new Set(ADDED_TOKENS.map((t) => t.content)));
    cache.set(target, trained);
  }
  const vocab: Record<string, number> = {};
  let next = 0;
  for (const t of ADDED_TOKENS) vocab[t.content] = next++;
  for (const ch of byteToUnicodeTable()) vocab[ch] = next++;
  for (const tok of trained.tokens) vocab[tok] = next++;
  const vocabSize = next;

  const addedTokens = ADDED_TOKENS.map((t) => ({
    id: t.id,
    content: t.content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: t.special,
  }));

  const tokenizerJson = byteLevelBpeTokenizerJson({
    addedTokens,
    preTokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    postProcessor: specialTokensPostProcessor({ text: '<s>', id: TOKEN_IDS.bos }, undefined),
    vocab,
    merges: trained.merges.map(([a, b]) => [a, b]),
    ignoreMerges: false,
  });

  const addedTokensDecoder: Record<string, unknown> = {};
  for (const t of ADDED_TOKENS) {
    addedTokensDecoder[String(t.id)] = {
      content: t.content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: t.special,
    };
  }
  const tokenizerConfig: Record<string, unknown> = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    bos_token: '<s>',
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: '<SPECIAL_12>',
    model_max_length: options.modelMaxLength ?? 4096,
    pad_token: '<unk>',
    tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: '<unk>',
  };
  const specialTokensMap: Record<string, unknown> = {
    bos_token: '<s>',
    eos_token: '<SPECIAL_12>',
    pad_token: '<unk>',
    unk_token: '<unk>',
  };
  return { tokenizerJson, tokenizerConfig, specialTokensMap, vocabSize };
}
