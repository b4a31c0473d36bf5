/**
 * A small Server-Sent Events reader for OpenAI-style streams (`data: {...}` lines, `data: [DONE]` at the
 * end). Only `data` fields matter for these APIs; comments, `event:` and `id:` lines are skipped.
 */
import { byteChunks } from '../byte-stream.js';

export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<string, void, undefined> {
  const decoder = new TextDecoder();
  let buf = '';
  let data: string[] = [];
  // The events the complete lines of `buf` finish (a blank line ends one).
  function* events(): Generator<string, void, undefined> {
    let nl: number;
    while ((nl = buf.search(/\r\n|\n|\r/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        if (data.length > 0) yield data.join('\n');
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(line[5] === ' ' ? 6 : 5));
      }
    }
  }
  for await (const value of byteChunks(body)) {
    buf += decoder.decode(value, { stream: true });
    yield* events();
  }
  buf += decoder.decode();
  yield* events();
  if (buf.startsWith('data:')) data.push(buf.slice(buf[5] === ' ' ? 6 : 5));
  if (data.length > 0) yield data.join('\n');
}
