/** Small string helpers shared by the streaming chat filters. */

/**
 * Length of the longest suffix of `text` that is a proper prefix of `tag` (0 when none): the part of a stream
 * that must be held back because the next chunk may complete `tag`.
 */
export function partialTagLength(text: string, tag: string): number {
  for (let k = Math.min(text.length, tag.length - 1); k > 0; k--) {
    if (text.endsWith(tag.slice(0, k))) return k;
  }
  return 0;
}

/**
 * Appends a `{type, text}` piece to an event list, skipping empty text and merging with a preceding piece of the
 * same type (events without `text`, such as tool calls, are never merged into).
 */
export function pushPiece(out: Array<{ type: string }>, type: string, text: string): void {
  if (text === '') return;
  const last = out[out.length - 1] as { type: string; text?: unknown } | undefined;
  if (last !== undefined && last.type === type && typeof last.text === 'string') last.text += text;
  else out.push({ type, text } as { type: string });
}
