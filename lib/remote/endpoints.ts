/**
 * Client-side endpoint selection (not a scheduler): each session goes to the endpoint that ranks first
 * for its key by rendezvous (highest-random-weight) hashing, so the turns of a conversation reach the
 * replica that holds its cache, and removing one endpoint moves only the sessions it had. Endpoints that
 * refuse connections or answer 5xx are marked down and skipped until a health check (GET /health, else
 * GET /v1/models) finds them up again; when every endpoint is down, all are tried anyway.
 */
import { createHash } from 'node:crypto';

export interface Endpoint {
  /** Base URL without a trailing slash and without `/v1` (e.g. http://10.0.0.5:8080). */
  readonly url: string;
  healthy: boolean;
  /** Requests that failed over away from this endpoint (connection errors, 5xx). */
  failures: number;
  /** Requests answered by this endpoint. */
  served: number;
  lastError: string | undefined;
}

export interface EndpointStats {
  url: string;
  healthy: boolean;
  served: number;
  failures: number;
  lastError?: string;
}

/** 48 bits of sha1(key + '\n' + url): the endpoint's weight for the key. */
function weight(key: string, url: string): number {
  return createHash('sha1').update(key).update('\n').update(url).digest().readUIntBE(0, 6);
}

/** `http://h:p/v1/` → `http://h:p`. */
export function normalizeBaseUrl(raw: string): string {
  const u = new URL(raw);
  let p = u.pathname.replace(/\/+$/, '');
  if (p.endsWith('/v1')) p = p.slice(0, -3);
  return `${u.origin}${p}`;
}

export class EndpointPool {
  readonly endpoints: Endpoint[];
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;

  constructor(
    urls: string[],
    private readonly headers: () => Record<string, string>,
    private readonly healthCheckIntervalMs: number,
    private readonly healthCheckTimeoutMs = 2000,
  ) {
    this.endpoints = urls.map((url) => ({ url: normalizeBaseUrl(url), healthy: true, failures: 0, served: 0, lastError: undefined }));
    if (healthCheckIntervalMs > 0 && this.endpoints.length > 1) {
      this.timer = setInterval(() => void this.checkHealth(), healthCheckIntervalMs);
      this.timer.unref();
    }
  }

  /** The endpoints in the order a request for `key` tries them: up ones by weight, then down ones by weight. */
  order(key: string): Endpoint[] {
    const ranked = this.endpoints.map((e) => ({ e, w: weight(key, e.url) })).sort((a, b) => b.w - a.w).map((x) => x.e);
    return [...ranked.filter((e) => e.healthy), ...ranked.filter((e) => !e.healthy)];
  }

  /** The endpoint a session with this key goes to now. */
  pick(key: string): Endpoint {
    return this.order(key)[0]!;
  }

  markDown(e: Endpoint, reason: string): void {
    e.healthy = false;
    e.failures++;
    e.lastError = reason;
  }

  markUp(e: Endpoint): void {
    e.healthy = true;
  }

  /** Probes every endpoint once (GET /health, else GET /v1/models): 2xx marks it up, anything else down. */
  checkHealth(): Promise<void> {
    this.checking ??= Promise.all(this.endpoints.map((e) => this.probe(e))).then(
      () => {
        this.checking = undefined;
      },
      () => {
        this.checking = undefined;
      },
    );
    return this.checking;
  }

  private async probe(e: Endpoint): Promise<void> {
    for (const path of ['/health', '/v1/models']) {
      try {
        const res = await fetch(`${e.url}${path}`, { headers: this.headers(), signal: AbortSignal.timeout(this.healthCheckTimeoutMs) });
        await res.body?.cancel().catch(() => undefined);
        if (res.ok) {
          e.healthy = true;
          return;
        }
        if (res.status >= 500) break;
      } catch (err) {
        e.healthy = false;
        e.lastError = (err as Error).message;
        return;
      }
    }
    e.healthy = false;
  }

  stats(): EndpointStats[] {
    return this.endpoints.map((e) => ({ url: e.url, healthy: e.healthy, served: e.served, failures: e.failures, ...(e.lastError ? { lastError: e.lastError } : {}) }));
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
