// Mixture-of-experts routing in float64, step by step as Hugging Face's NemotronHMoE.route_tokens_to_experts
// (transformers src/transformers/models/nemotron_h/modeling_nemotron_h.py):
//   scores  = sigmoid(router_logits)
//   choice  = scores + e_score_correction_bias                          (selection only)
//   group_scores = sum of the top-2 `choice` of each of n_group consecutive groups
//   keep the topk_group best groups; the other groups' experts get -inf
//   ids     = topk(choice, top_k)
//   weights = scores[ids]  (no bias);  if norm_topk_prob: weights /= (sum(weights) + 1e-20)
//   weights *= routed_scaling_factor
// torch.topk's order among exactly equal values is unspecified; here (and in csrc/kernels/moe.cc) the lower
// index wins. `margin` is the smallest gap at a decision the routing made (the k-th vs (k+1)-th choice, the
// topk_group-th vs next group score): below ~1e-5 an f32 engine may legitimately pick differently, so tests
// assert their inputs stay far from such near-ties.

import type { RefMoeConfig } from './config.js';

export interface Routing {
  ids: number[];
  weights: number[];
  margin: number;
}

/** Indices of the k best values (larger first, then lower index), best first. */
function topK(v: ArrayLike<number>, k: number): number[] {
  const order = Array.from({ length: v.length }, (_, i) => i);
  order.sort((a, b) => (v[b]! !== v[a]! ? v[b]! - v[a]! : a - b));
  return order.slice(0, k);
}

/** The gap between the k-th and (k+1)-th largest finite values; Infinity when there is no (k+1)-th. */
function gapAt(v: ArrayLike<number>, k: number): number {
  const sorted = Array.from(v).filter((x) => x !== -Infinity).sort((a, b) => b - a);
  return sorted.length > k ? sorted[k - 1]! - sorted[k]! : Infinity;
}

export function route(logits: ArrayLike<number>, bias: ArrayLike<number>, p: RefMoeConfig): Routing {
  const E = p.nRoutedExperts;
  const scores = Array.from({ length: E }, (_, e) => 1 / (1 + Math.exp(-logits[e]!)));
  const choice = scores.map((s, e) => s + bias[e]!);
  let margin = Infinity;
  const per = E / p.nGroup;
  if (p.nGroup > 1 && p.topkGroup < p.nGroup) {
    const groupScores = Array.from({ length: p.nGroup }, (_, g) => {
      const top = topK(choice.slice(g * per, (g + 1) * per), 2);
      return choice[g * per + top[0]!]! + choice[g * per + top[1]!]!;
    });
    margin = Math.min(margin, gapAt(groupScores, p.topkGroup));
    const keep = new Set(topK(groupScores, p.topkGroup));
    for (let g = 0; g < p.nGroup; g++) if (!keep.has(g)) for (let i = 0; i < per; i++) choice[g * per + i] = -Infinity;
  }
  margin = Math.min(margin, gapAt(choice, p.numExpertsPerTok));
  const ids = topK(choice, p.numExpertsPerTok);
  let weights = ids.map((e) => scores[e]!);
  if (p.normTopkProb) {
    const denom = weights.reduce((a, b) => a + b, 0) + 1e-20;
    weights = weights.map((w) => w / denom);
  }
  weights = weights.map((w) => w * p.routedScalingFactor);
  return { ids, weights, margin };
}
