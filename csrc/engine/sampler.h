// Token sampling from a row of logits. Deterministic: the random draw for step s of a request with
// seed k is a pure function of (k, s) (a counter-based generator), so a seeded request yields the same
// tokens however it is scheduled or batched.
//
// Order of operations in sample_token (x = the working copy of the logits, float):
//   1. copy the logits into x;
//   2. logit bias: x[id] += bias for each (id, bias) in logit_bias (ids outside [0, vocab) and NaN
//      biases are ignored; a bias <= kBanBias bans the token: x[id] = -inf);
//   3. repetition penalty (HF/CTRL) over every DISTINCT token of history[0, n_history) (prompt and
//      generated), applied once per token: x > 0 ? x / repetition_penalty : x * repetition_penalty;
//   4. presence/frequency penalties (OpenAI) over the GENERATED tokens history[n_prompt, n_history):
//      x -= presence_penalty * (count > 0) + frequency_penalty * count;
//   4b. grammar mask (allow != null): every token whose bit is clear gets x = -inf (before temperature,
//      top-k, top-p and min-p, so they all work on the allowed tokens only);
//   5. NaN -> -inf, +inf -> FLT_MAX (a NaN never wins, an infinite logit cannot make NaN below);
//   6. temperature == 0 (or negative or NaN): return the argmax of x (lowest id on ties);
//   7. temperature: e_i = exp((x_i - x_max) / temperature), in double (the max-subtracted softmax
//      numerator; e_max = 1);
//   8. top-k (0 < top_k < vocab): keep the top_k tokens by x (ties: lower id first) — the softmax
//      below is over those only;
//   9. softmax over the kept set S: p_i = e_i / Z, Z = sum over S of e_i (double);
//  10. min-p (0 < min_p): keep p_i >= min_p * p_max, i.e. e_i >= min_p (relative to the most likely
//      token at this temperature);
//  11. top-p (top_p < 1): sort S by descending probability (ties: lower id first); the nucleus is the
//      shortest prefix whose mass under the step-9 softmax is >= top_p (at least one token). Min-p and
//      top-p both keep a prefix of that order, so the kept set is the shorter of the two prefixes;
//  12. renormalise over the kept tokens and draw by inverse CDF in that same order: with
//      u = counter_uniform(seed, step) in [0, 1), the first kept token whose cumulative renormalised
//      probability exceeds u.
// If no token has a finite logit after steps 2-5 (all NaN/-inf, or all banned), the result is the
// lowest allowed id whose INPUT logit is finite, else the lowest allowed id, or 0 when there is none. vocab <= 0 returns 0.
//
// Cost: O(vocab) per call plus O(H log H) for a history of H tokens; nothing sorts the whole
// vocabulary. Top-k selects with a bounded heap (nth_element for k > 1024). Without a small top-k
// set, one pass computes Z and sums the weights into 4097 buckets of e (64 per binade, by the double's
// exponent and top mantissa bits), which cut the sampling order into consecutive runs: the top-p
// crossing and the inverse-CDF position are each found by ordering one bucket (nth_element halving).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace nemo {

// A logit bias at or below this bans the token outright (OpenAI's convention: -100 is a ban).
constexpr float kBanBias = -100.0f;

struct SamplingParams {
  float temperature = 0.0f;        // 0 = greedy argmax (lowest id on ties), penalties and bias still apply first
  int32_t top_k = 0;               // 0 = off
  float top_p = 1.0f;              // (0,1]; 1 = off
  float min_p = 0.0f;              // [0,1); 0 = off, relative to the most likely token after temperature
  float repetition_penalty = 1.0f; // HF/CTRL semantics over ALL tokens in `history` (prompt + generated): logit > 0 ? logit / p : logit * p
  float presence_penalty = 0.0f;   // OpenAI semantics over GENERATED tokens only: logit -= presence if count > 0
  float frequency_penalty = 0.0f;  // logit -= frequency * count (generated tokens only)
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logit (before temperature); -inf-like values (e.g. -100 or less) ban a token
  uint64_t seed = 0;
};

// Uniform double in [0, 1) for (seed, counter): splitmix64 finaliser over a combined key.
double counter_uniform(uint64_t seed, uint64_t counter);

// history = every token the sequence holds; history[n_prompt..) are the generated ones (null or
// n_history <= 0: no history; n_prompt is clamped to [0, n_history]; ids outside the vocabulary are
// ignored). step = index of this draw in its request: the uniform draw is counter_uniform(seed, step),
// so a seeded request gives the same tokens however it is batched. Thread-safe (per-thread scratch).
// allow: null, or a bitmask of (vocab + 31) / 32 words, bit i % 32 of word i / 32 set = token i allowed.
int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& params,
                     const int32_t* history, int64_t n_history, int64_t n_prompt, uint64_t step,
                     const uint32_t* allow = nullptr);

// One draw of a batch sampled elsewhere than sample_token (a device backend, Backend::sample): the
// arguments of sample_token but the logits row. want_logprob: also return the token's log-probability
// under the raw logits.
struct SampleSpec {
  const SamplingParams* params;
  const int32_t* history;
  int64_t n_history;
  int64_t n_prompt;
  uint64_t step;
  bool want_logprob = false;
};

}  // namespace nemo
