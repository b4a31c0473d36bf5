import { NemotronError } from '../errors.js';

/**
 * A remote server answered an error (`ERR_REMOTE`, with its HTTP status and OpenAI error code), or no
 * endpoint could be reached (`ERR_REMOTE_UNAVAILABLE`: every endpoint refused the connection or answered 5xx).
 */
export class RemoteError extends NemotronError {
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined;
  /** The OpenAI-style error code (`error.code`) the server sent, if any. */
  readonly remoteCode: string | undefined;
  /** The endpoint that answered (or the last one tried). */
  readonly endpoint: string | undefined;
  constructor(code: 'ERR_REMOTE' | 'ERR_REMOTE_UNAVAILABLE', message: string, options: { cause?: unknown; status?: number; remoteCode?: string; endpoint?: string } = {}) {
    super(code, message, { cause: options.cause });
    this.status = options.status;
    this.remoteCode = options.remoteCode;
    this.endpoint = options.endpoint;
  }
}
