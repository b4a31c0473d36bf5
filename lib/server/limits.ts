/**
 * The server's default time limits, in their own module so that `serve --help` (lib/cli.ts) can state them
 * without loading the HTTP stack.
 */
export const DEFAULT_TIMEOUTS = {
  /** for the request headers to arrive */
  headersTimeoutMs: 10_000,
  /** for the whole request, body included, to arrive */
  bodyTimeoutMs: 60_000,
  /** for a kept-alive (or new) connection to send its next request */
  idleTimeoutMs: 5_000,
} as const;
