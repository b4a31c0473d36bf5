/**
 * Prometheus metrics (prom-client), named as vLLM names them where vLLM has the metric, so dashboards
 * and autoscalers built for vLLM read them unchanged. Every metric carries `model_name` as vLLM's do.
 *
 *   vllm:num_requests_running            gauge      sequences held by running requests (model.stats().liveSequences)
 *   vllm:num_requests_waiting            gauge      requests waiting for a sequence slot
 *   vllm:kv_cache_usage_perc             gauge      KV blocks in use / the planned pool, 0..1 (also as vllm:gpu_cache_usage_perc, vLLM's older name)
 *   vllm:prompt_tokens_total             counter    prompt tokens of finished requests
 *   vllm:generation_tokens_total         counter    generated tokens of finished requests
 *   vllm:prefix_cache_queries_total      counter    prompt tokens looked up in the prefix cache (vLLM counts tokens)
 *   vllm:prefix_cache_hits_total         counter    of those, tokens restored from it
 *   vllm:request_success_total           counter    finished requests, by finished_reason (stop | length | abort | error)
 *   vllm:time_to_first_token_seconds     histogram  from the HTTP request's arrival to its first sampled token
 *   vllm:inter_token_latency_seconds     histogram  between consecutive sampled tokens of a request (each interval)
 *   vllm:e2e_request_latency_seconds     histogram  from arrival to the last token
 *   vllm:request_queue_time_seconds      histogram  waiting for a sequence slot
 *   vllm:request_prefill_time_seconds    histogram  from admission to the first token
 *   vllm:request_decode_time_seconds     histogram  from the first token to the last
 *   vllm:request_prompt_tokens           histogram  prompt tokens per request
 *   vllm:request_generation_tokens       histogram  generated tokens per request
 *   nemotron_node:tokens_processed_total counter    tokens fed through the forward pass (prompts, sampled and forced tokens)
 *   nemotron_node:prefix_cache_hit_requests_total counter requests that restored a cached prefix
 *   nemotron_node:prefix_cache_tokens_reused_total counter prompt tokens restored from the prefix cache (every request of the model)
 *   nemotron_node:kv_blocks_used         gauge      KV-cache blocks (64 positions, all attention layers) in use
 *   nemotron_node:kv_blocks_total        gauge      KV-cache blocks in the planned pool
 *   nemotron_node:snapshot_bytes         gauge      bytes held by the prefix cache
 * plus prom-client's default process metrics (process_*, nodejs_*).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { GenerateResult, ModelStats, NemotronModel } from '../model.js';

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const E2E_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

export interface ServerMetrics {
  registry: Registry;
  /** Records a finished generation: `arrivalMs` when its HTTP request arrived, `doneMs` when its result came (performance.now()). */
  observe(result: GenerateResult, arrivalMs: number, doneMs: number): void;
  /** A per-token hook for one HTTP request (its choices are told apart by request id): time to first token, then each inter-token interval. */
  tokenTimes(arrivalMs: number): (request: number, atMs: number) => void;
}

export function createMetrics(model: NemotronModel, modelName: string, registry: Registry = new Registry()): ServerMetrics {
  const labelNames = ['model_name'] as const;
  const labels = { model_name: modelName };
  let stats: ModelStats | null = null;
  let statsAt = -1;
  // One stats() read per scrape (each gauge's collect asks).
  const read = (): ModelStats | null => {
    const now = performance.now();
    if (now - statsAt > 50) {
      statsAt = now;
      try {
        stats = model.stats();
      } catch {
        stats = null; // closed
      }
    }
    return stats;
  };
  const gauge = (name: string, help: string, value: (s: ModelStats) => number) =>
    new Gauge({
      name, help, labelNames, registers: [registry],
      collect() {
        const s = read();
        if (s) this.set(labels, value(s));
      },
    });
  /** A counter that mirrors a monotonic figure of model.stats(). */
  const mirrored = (name: string, help: string, value: (s: ModelStats) => number) => {
    let last = 0;
    return new Counter({
      name, help, labelNames, registers: [registry],
      collect() {
        const s = read();
        if (!s) return;
        const v = value(s);
        if (v > last) this.inc(labels, v - last);
        last = Math.max(last, v);
      },
    });
  };
  gauge('vllm:num_requests_running', 'Requests holding a sequence (running or prefilling).', (s) => s.liveSequences);
  gauge('vllm:num_requests_waiting', 'Requests waiting for a sequence slot.', (s) => s.queuedRequests);
  const usage = (s: ModelStats) => (s.kvBlocksUsed + s.kvBlocksFree > 0 ? s.kvBlocksUsed / (s.kvBlocksUsed + s.kvBlocksFree) : 0);
  gauge('vllm:kv_cache_usage_perc', 'KV-cache usage: blocks in use over the planned pool, 0..1.', usage);
  gauge('vllm:gpu_cache_usage_perc', 'KV-cache usage, 0..1 (vLLM\'s older name for vllm:kv_cache_usage_perc; also on CPU).', usage);
  gauge('nemotron_node:kv_blocks_used', 'KV-cache blocks (64 positions, all attention layers) in use.', (s) => s.kvBlocksUsed);
  gauge('nemotron_node:kv_blocks_total', 'KV-cache blocks in the planned pool.', (s) => s.kvBlocksUsed + s.kvBlocksFree);
  gauge('nemotron_node:snapshot_bytes', 'Bytes held by the prefix (snapshot) cache.', (s) => s.snapshotBytes);
  mirrored('nemotron_node:tokens_processed_total', 'Tokens fed through the forward pass (prompts, sampled and forced tokens).', (s) => s.tokensProcessed);
  mirrored('nemotron_node:prefix_cache_hit_requests_total', 'Requests that restored a cached prefix.', (s) => s.prefixCacheHits);
  mirrored('nemotron_node:prefix_cache_tokens_reused_total', 'Prompt tokens restored from the prefix cache.', (s) => s.tokensReused);

  const counter = (name: string, help: string, extra: string[] = []) => new Counter({ name, help, labelNames: [...labelNames, ...extra], registers: [registry] });
  const promptTokens = counter('vllm:prompt_tokens_total', 'Prompt tokens of finished requests.');
  const generationTokens = counter('vllm:generation_tokens_total', 'Generated tokens of finished requests.');
  const cacheQueries = counter('vllm:prefix_cache_queries_total', 'Prompt tokens looked up in the prefix cache.');
  const cacheHits = counter('vllm:prefix_cache_hits_total', 'Prompt tokens restored from the prefix cache.');
  const success = counter('vllm:request_success_total', 'Finished requests by finish reason.', ['finished_reason']);
  const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, labelNames, buckets, registers: [registry] });
  const ttft = histogram('vllm:time_to_first_token_seconds', 'Time from arrival to the first generated token.', TTFT_BUCKETS);
  const itl = histogram('vllm:inter_token_latency_seconds', 'Time between consecutive generated tokens of a request.', ITL_BUCKETS);
  const e2e = histogram('vllm:e2e_request_latency_seconds', 'Time from arrival to the last token.', E2E_BUCKETS);
  const queue = histogram('vllm:request_queue_time_seconds', 'Time waiting for a sequence slot.', E2E_BUCKETS);
  const prefill = histogram('vllm:request_prefill_time_seconds', 'Time from admission to the first token.', E2E_BUCKETS);
  const decode = histogram('vllm:request_decode_time_seconds', 'Time from the first token to the last.', E2E_BUCKETS);
  const TOKEN_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000];
  const promptSizes = histogram('vllm:request_prompt_tokens', 'Prompt tokens per request.', TOKEN_BUCKETS);
  const generationSizes = histogram('vllm:request_generation_tokens', 'Generated tokens per request.', TOKEN_BUCKETS);
  collectDefaultMetrics({ register: registry });

  return {
    registry,
    tokenTimes(arrivalMs) {
      const last = new Map<number, number>();
      return (request, atMs) => {
        const prev = last.get(request);
        if (prev === undefined) ttft.observe(labels, Math.max(0, atMs - arrivalMs) / 1000);
        else itl.observe(labels, Math.max(0, atMs - prev) / 1000);
        last.set(request, atMs);
      };
    },
    observe(r, arrivalMs, doneMs) {
      const u = r.usage;
      promptTokens.inc(labels, u.promptTokens);
      generationTokens.inc(labels, u.completionTokens);
      cacheQueries.inc(labels, u.promptTokens);
      cacheHits.inc(labels, u.cachedTokens);
      success.inc({ ...labels, finished_reason: r.finishReason }, 1);
      const t = r.timings;
      e2e.observe(labels, (doneMs - arrivalMs) / 1000);
      queue.observe(labels, t.queueMs / 1000);
      promptSizes.observe(labels, u.promptTokens);
      generationSizes.observe(labels, u.completionTokens);
      if (t.timeToFirstTokenMs > 0) {
        prefill.observe(labels, t.timeToFirstTokenMs / 1000);
        decode.observe(labels, Math.max(0, t.totalMs - t.queueMs - t.timeToFirstTokenMs) / 1000);
      }
    },
  };
}
