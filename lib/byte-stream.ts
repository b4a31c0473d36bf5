/**
 * The chunks of a fetch() body (a web ReadableStream) as an async iterable. Leaving the loop early (break,
 * throw) cancels the stream, so the connection is not left half-read.
 */
export async function* byteChunks(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}
