/**
 * Where a rendered conversation can be cut and resumed. Nemotron's template opens every message with a
 * special token (`<SPECIAL_10>` for the system message, `<SPECIAL_11>` for the others); special tokens
 * always split tokenization, so the tokens before a message header are exactly the tokens of the
 * conversation up to that message, whatever follows. Snapshots taken there serve every later request
 * that shares those messages, stateless or not.
 */
import type { ChatMessage, ToolDefinition } from './template.js';
import type { ChatTemplate } from './template.js';
import type { TextTokenizer } from '../tokenizer.js';

export interface TurnMarkers {
  /** Token ids that open a message. */
  ids: Set<number>;
  /** Their text, as the template writes it. */
  texts: string[];
}

/** The message-header tokens of this tokenizer, or null when it has none (no boundary snapshots). */
export function turnMarkers(tokenizer: TextTokenizer): TurnMarkers | null {
  const ids = new Set<number>();
  const texts: string[] = [];
  for (const text of ['<SPECIAL_10>', '<SPECIAL_11>']) {
    const id = tokenizer.tokenId(text);
    if (id !== undefined && tokenizer.isSpecial(id)) {
      ids.add(id);
      texts.push(text);
    }
  }
  return ids.size > 0 ? { ids, texts } : null;
}

/** Positions before each message header after the first: the end of every earlier message. */
export function turnBoundaries(prompt: Int32Array, markers: TurnMarkers): number[] {
  const out: number[] = [];
  for (let p = 1; p < prompt.length; p++) if (markers.ids.has(prompt[p]!)) out.push(p);
  return out;
}

/**
 * The text the NEXT request of this conversation starts with: `messages` plus the reply as the template
 * renders it in history (the reasoning dropped), up to the header of the message that will follow.
 * Null when the template does not render the conversation so (no marker found).
 */
export function nextTurnText(
  template: ChatTemplate,
  messages: ChatMessage[],
  reply: ChatMessage,
  options: { tools?: ToolDefinition[]; reasoning?: boolean },
  markers: TurnMarkers,
): string | null {
  const mark = '\u0000NEXT_TURN\u0000';
  let text: string;
  try {
    text = template.render([...messages, reply, { role: 'user', content: mark }], { ...options, addGenerationPrompt: false });
  } catch {
    return null;
  }
  const at = text.indexOf(mark);
  if (at < 0) return null;
  let cut = -1;
  for (const m of markers.texts) cut = Math.max(cut, text.lastIndexOf(m, at));
  return cut > 0 ? text.slice(0, cut) : null;
}
