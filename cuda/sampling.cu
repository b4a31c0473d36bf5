// Token sampling on the device: sample_token (csrc/engine/sampler.h) for rows of logits that never
// leave the device; only the chosen ids (and log-probs when asked) are copied back. Same order of
// operations, same counter-based draw u = counter_uniform(seed, step) (computed on the host by the
// CPU's own function), so a seed gives the same token on both backends up to float rounding near ties.
//
// One CTA per row. The host folds the bias and penalties into a short list of per-token edits (the
// distinct ids touched, each applied in the CPU's order: biases, repetition, presence/frequency); the
// kernel copies the row, applies the edits, maps NaN/+inf, takes the argmax (greedy ends there), then
// computes e = exp((x - x_max) / T) in double once per token.
//
// No sort. Every cut of the CPU sampler is "the first token, in the sampling order, at which a running
// sum passes a threshold" (top-k: a count reaching k; top-p: mass >= top_p·Z; the draw: mass > u·kept).
// The order is descending logit, ties by lower id, i.e. descending 64-bit key (ordered float bits of x,
// then ~id); e is monotone in x, so this is the CPU's order up to two logits whose e rounds equal.
// Each cut is a weighted radix select over that key, 4 bits per pass: per-thread register histograms
// (count and mass of the 16 digit values among the tokens that share the prefix found so far), reduced
// over the block in a fixed tree, and one thread walks the 16 buckets from the top. It stops early when
// the chosen bucket holds a single token. Sums are in a fixed order, so a row gives the same token on
// every run; they differ from the CPU's order only by rounding.
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"

namespace nemo::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kDigits = 16;

// One row's sampling parameters (make_sample_row).
struct SampleRowDev {
  float temperature;
  int32_t top_k;
  int32_t use_top_p;
  int32_t want_logprob;
  double top_p;  // clamped to >= 0
  double min_e;  // min-p as a bound on e (0: off)
  double u;      // counter_uniform(seed, step)
  int32_t edit_begin, edit_end;
};
// One distinct token touched by bias or penalties: x = its biases in order (<= kBanBias bans), then
// x > 0 ? x / rep : x * rep, then (pf) x = float(double(x) - pres - fc).
struct SampleEditDev {
  int32_t id;
  int32_t bias_begin, bias_end;
  float rep;
  int32_t pf;
  double pres, fc;
};

// -0.0 and +0.0 are one value here, as in the CPU sampler's float comparisons (equal, so ordered by id):
// the sign bit is dropped before the bits are made monotone, or -0.0 would sort below +0.0 and a top-k
// or top-p cut between them would keep another token than the CPU does.
__device__ __forceinline__ uint64_t sort_key(float x, int64_t i) {
  const uint32_t b = x == 0.0f ? 0u : __float_as_uint(x);  // canonical zero
  const uint32_t o = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // monotone in x
  return (static_cast<uint64_t>(o) << 32) | static_cast<uint64_t>(0xFFFFFFFFu - static_cast<uint32_t>(i));
}
__device__ __forceinline__ int32_t key_id(uint64_t key) {
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key));
}

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ int warp_sum_i(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

struct Shared {
  double m[kWarps][kDigits];
  int c[kWarps][kDigits];
  double dsum[kWarps];
  float fv[kWarps];
  int64_t iv[kWarps];
  uint64_t prefix, mask;
  double base, t;
  int done;
  uint64_t found;
  double value;
  int64_t index;
};

// Fixed-tree block sum of a double; every thread gets it.
__device__ double block_sum_d(double v, Shared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum_d(v);
  __syncthreads();
  if (lane == 0) sh.dsum[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (int w = 0; w < kWarps; ++w) s += sh.dsum[w];
    sh.value = s;
  }
  __syncthreads();
  return sh.value;
}

// The row's candidates: finite x (after step 5), key >= min_key, and when `need_e` e > 0 and e >= min_e.
struct Filter {
  uint64_t min_key;
  bool need_e;
  double min_e;
};

// The key of the first token, in descending key order among those passing `f`, at which the running sum
// of weights (e when `weighted`, else 1) passes t (strict: > t, else >= t); the last such token when
// none does. The set must not be empty.
__device__ uint64_t crossing(const float* x, const double* e, int64_t vocab, const Filter& f, bool weighted, double t,
                             bool strict, Shared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) {
    sh.prefix = 0;
    sh.base = 0.0;
    sh.t = t;
    sh.done = 0;
  }
  __syncthreads();
  for (int shift = 60; shift >= 0; shift -= 4) {
    const uint64_t hi_mask = shift >= 60 ? 0 : ~uint64_t{0} << (shift + 4);
    const uint64_t prefix = sh.prefix;
    double m[kDigits];
    int c[kDigits];
#pragma unroll
    for (int d = 0; d < kDigits; ++d) {
      m[d] = 0.0;
      c[d] = 0;
    }
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float v = x[i];
      if (v == -INFINITY) continue;
      const uint64_t k = sort_key(v, i);
      if (k < f.min_key || (k & hi_mask) != prefix) continue;
      double w = 1.0;
      if (f.need_e || weighted) {
        const double ei = e[i];
        if (f.need_e && !(ei > 0.0 && ei >= f.min_e)) continue;
        w = ei;
      }
      const int d = static_cast<int>((k >> shift) & 15);
      m[d] += weighted ? w : 0.0;
      c[d] += 1;
    }
#pragma unroll
    for (int d = 0; d < kDigits; ++d) {
      const double ms = warp_sum_d(m[d]);
      const int cs = warp_sum_i(c[d]);
      if (lane == 0) {
        sh.m[warp][d] = ms;
        sh.c[warp][d] = cs;
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int chosen = -1, last = -1, chosen_count = 0;
      double base = sh.base;
      for (int d = kDigits - 1; d >= 0; --d) {  // descending key: digit 15 first
        double md = 0.0;
        int cd = 0;
        for (int w = 0; w < kWarps; ++w) {
          md += sh.m[w][d];
          cd += sh.c[w][d];
        }
        if (cd == 0) continue;
        if (!weighted) md = static_cast<double>(cd);
        last = d;
        const double s = base + md;
        if (strict ? s > sh.t : s >= sh.t) {
          chosen = d;
          chosen_count = cd;
          break;
        }
        base = s;
        chosen_count = cd;
      }
      if (chosen < 0) {  // rounding, or fewer tokens than t: the last token of the set
        chosen = last;
        sh.t = INFINITY;  // from here on nothing passes, so each level takes its last bucket
      }
      sh.base = base;
      sh.prefix = prefix | (static_cast<uint64_t>(chosen) << shift);
      sh.mask = ~uint64_t{0} << shift;
      sh.done = chosen_count == 1 || shift == 0;
    }
    __syncthreads();
    if (sh.done) break;
  }
  // The decided digits (bits >= the last shift) now identify one token: find it.
  const uint64_t prefix = sh.prefix, mask = sh.mask;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = x[i];
    if (v == -INFINITY) continue;
    const uint64_t k = sort_key(v, i);
    if (k < f.min_key || (k & mask) != prefix) continue;
    if (f.need_e && !(e[i] > 0.0 && e[i] >= f.min_e)) continue;
    sh.found = k;  // exactly one thread gets here
  }
  __syncthreads();
  return sh.found;
}


// Argmax over the block: larger v, ties to the lower id; (-inf, INT_MAX) when every v is -inf.
__device__ void block_argmax(float& v, int& id, Shared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, id, o);
    if (ov > v || (ov == v && oi < id)) {
      v = ov;
      id = oi;
    }
  }
  __syncthreads();
  if (lane == 0) {
    sh.fv[warp] = v;
    sh.iv[warp] = id;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float bv = sh.fv[0];
    int64_t bi = sh.iv[0];
    for (int w = 1; w < kWarps; ++w) {
      if (sh.fv[w] > bv || (sh.fv[w] == bv && sh.iv[w] < bi)) {
        bv = sh.fv[w];
        bi = sh.iv[w];
      }
    }
    sh.fv[0] = bv;
    sh.iv[0] = bi;
  }
  __syncthreads();
  v = sh.fv[0];
  id = static_cast<int>(sh.iv[0]);
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads)
    k_sample(int32_t* __restrict__ tokens, float* __restrict__ logprobs, const float* __restrict__ logits, int64_t ld,
             int64_t vocab, const SampleRowDev* __restrict__ rows, const SampleEditDev* __restrict__ edits,
             const float* __restrict__ biases, float* __restrict__ xw_all, double* __restrict__ ew_all) {
  __shared__ Shared sh;
  const SampleRowDev r = rows[blockIdx.x];
  const float* in = logits + blockIdx.x * ld;
  float* x = xw_all + blockIdx.x * vocab;
  double* e = ew_all + blockIdx.x * vocab;

  // 1. the working copy; 2-4. bias and penalties, one thread per distinct token, in the CPU's order.
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) x[i] = in[i];
  __syncthreads();
  for (int j = r.edit_begin + static_cast<int>(threadIdx.x); j < r.edit_end; j += kThreads) {
    const SampleEditDev ed = edits[j];
    float v = x[ed.id];
    for (int b = ed.bias_begin; b < ed.bias_end; ++b) v = biases[b] <= kBanBias ? -INFINITY : v + biases[b];
    if (ed.rep != 1.0f) v = v > 0.0f ? v / ed.rep : v * ed.rep;
    if (ed.pf) v = static_cast<float>(static_cast<double>(v) - ed.pres - ed.fc);
    x[ed.id] = v;
  }
  __syncthreads();

  // 5. NaN -> -inf, +inf -> FLT_MAX, with the argmax (lowest id on ties) and the lowest finite input id.
  float best = -INFINITY;
  int arg = INT32_MAX, first_finite = INT32_MAX;
  float raw_max = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    float v = x[i];
    if (isnan(v)) {
      v = -INFINITY;
    } else if (v == INFINITY) {
      v = FLT_MAX;
    }
    x[i] = v;
    if (v > best) {  // ids rise within a thread: the first of equal values is kept
      best = v;
      arg = static_cast<int>(i);
    }
    const float raw = in[i];
    if (isfinite(raw)) {
      first_finite = min(first_finite, static_cast<int>(i));
      raw_max = fmaxf(raw_max, raw);
    }
  }
  block_argmax(best, arg, sh);
  float neg_first = first_finite == INT32_MAX ? -INFINITY : 0.0f;  // argmax of (0, -id): the lowest id
  int ff = first_finite;
  block_argmax(neg_first, ff, sh);
  int dummy = 0;
  block_argmax(raw_max, dummy, sh);

  int32_t token;
  if (best == -INFINITY) {
    token = neg_first == -INFINITY ? 0 : ff;  // nothing finite is left
  } else if (!(r.temperature > 0.0f)) {
    token = arg;  // 6. greedy
  } else {
    // 7. e = exp((x - x_max) / T) in double.
    const double top = static_cast<double>(best), inv_t = 1.0 / static_cast<double>(r.temperature);
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float v = x[i];
      e[i] = v == -INFINITY ? 0.0 : exp((static_cast<double>(v) - top) * inv_t);
    }
    __syncthreads();
    // 8. top-k: the key of the k-th token in the order; the set S is every key at or above it.
    Filter fs{0, false, 0.0};
    if (r.top_k > 0 && r.top_k < vocab) fs.min_key = crossing(x, e, vocab, fs, false, static_cast<double>(r.top_k), false, sh);
    // 9. Z over S.
    double z = 0.0;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float v = x[i];
      if (v != -INFINITY && sort_key(v, i) >= fs.min_key) z += e[i];
    }
    z = block_sum_d(z, sh);
    // 10-11. min-p and top-p keep a prefix of the order: members are e > 0 and e >= min_e; the nucleus
    // ends at the first member whose running mass reaches top_p · Z.
    Filter fk{fs.min_key, true, r.min_e};
    if (r.use_top_p) fk.min_key = crossing(x, e, vocab, fk, true, r.top_p * z, false, sh);
    double kept = 0.0;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float v = x[i];
      if (v != -INFINITY && sort_key(v, i) >= fk.min_key && e[i] > 0.0 && e[i] >= fk.min_e) kept += e[i];
    }
    kept = block_sum_d(kept, sh);
    // 12. inverse CDF: the first kept token whose running mass exceeds u · kept.
    token = key_id(crossing(x, e, vocab, fk, true, r.u * kept, true, sh));
  }

  if (threadIdx.x == 0) tokens[blockIdx.x] = token;
  if (logprobs != nullptr && r.want_logprob) {
    // Log-probability of the token under the model's own distribution (the raw logits, before bias,
    // penalties and temperature).
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float raw = in[i];
      if (isfinite(raw)) s += exp(static_cast<double>(raw) - static_cast<double>(raw_max));
    }
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) {
      const float raw = in[token];
      logprobs[blockIdx.x] = isfinite(raw) && s > 0.0
                                 ? static_cast<float>(static_cast<double>(raw) - raw_max - log(s))
                                 : -INFINITY;
    }
  }
}

}  // namespace

// One row's parameters for k_sample: the draw, the cuts, and the row's edits appended to *edits /
// *biases, exactly as apply_bias_and_penalties (sampler.cc) would change those tokens.
SampleRowDev make_sample_row(const SampleSpec& s, int64_t vocab, std::vector<SampleEditDev>* edits,
                             std::vector<float>* biases) {
  const SamplingParams& p = *s.params;
  SampleRowDev r{};
  r.temperature = p.temperature;
  r.top_k = p.top_k;
  r.use_top_p = p.top_p < 1.0f;  // NaN: off
  r.top_p = std::max(static_cast<double>(p.top_p), 0.0);
  r.min_e = p.min_p > 0.0f ? std::min(static_cast<double>(p.min_p), 1.0) : 0.0;  // NaN: off
  r.u = counter_uniform(p.seed, s.step);
  r.want_logprob = s.want_logprob ? 1 : 0;
  r.edit_begin = static_cast<int32_t>(edits->size());

  // Per distinct id: its biases in logit_bias order, whether the repetition penalty applies, and its
  // count among the generated tokens. std::map keeps ids sorted (one edit per id, no write races).
  struct Acc {
    std::vector<float> bias;
    bool in_history = false;
    int64_t generated = 0;
  };
  std::map<int32_t, Acc> acc;
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= vocab || std::isnan(bias)) continue;
    acc[id].bias.push_back(bias);
  }
  const float rp = p.repetition_penalty;
  const bool use_rp = std::isfinite(rp) && rp > 0.0f && rp != 1.0f;
  const double presence = std::isfinite(p.presence_penalty) ? p.presence_penalty : 0.0;
  const double frequency = std::isfinite(p.frequency_penalty) ? p.frequency_penalty : 0.0;
  if (s.history != nullptr && s.n_history > 0) {
    const int64_t np = std::clamp<int64_t>(s.n_prompt, 0, s.n_history);
    const bool use_pf = (presence != 0.0 || frequency != 0.0) && np < s.n_history;
    for (int64_t i = 0; i < s.n_history; ++i) {
      const int32_t id = s.history[i];
      if (id < 0 || id >= vocab) continue;
      if (use_rp) acc[id].in_history = true;
      if (use_pf && i >= np) acc[id].generated += 1;
    }
  }
  for (const auto& [id, a] : acc) {
    SampleEditDev ed{};
    ed.id = id;
    ed.bias_begin = static_cast<int32_t>(biases->size());
    biases->insert(biases->end(), a.bias.begin(), a.bias.end());
    ed.bias_end = static_cast<int32_t>(biases->size());
    ed.rep = a.in_history ? rp : 1.0f;
    ed.pf = a.generated > 0 ? 1 : 0;
    ed.pres = presence;
    ed.fc = frequency * static_cast<double>(a.generated);
    if (ed.bias_end == ed.bias_begin && ed.rep == 1.0f && !ed.pf) continue;
    edits->push_back(ed);
  }
  r.edit_end = static_cast<int32_t>(edits->size());
  return r;
}


cudaError_t sample(int32_t* tokens_host, float* logprobs_host, const float* logits, int64_t ld, int64_t vocab,
                   const std::vector<SampleSpec>& specs, Scratch& scratch, cudaStream_t stream) {
  const int n = static_cast<int>(specs.size());
  if (n == 0) return cudaSuccess;
  if (vocab <= 0 || vocab > INT32_MAX) {
    for (int i = 0; i < n; ++i) tokens_host[i] = 0;
    return vocab <= 0 ? cudaSuccess : cudaErrorInvalidValue;
  }
  std::vector<SampleRowDev> rows(static_cast<size_t>(n));
  std::vector<SampleEditDev> edits;
  std::vector<float> biases;
  bool any_logprob = false;
  for (int i = 0; i < n; ++i) {
    rows[i] = make_sample_row(specs[i], vocab, &edits, &biases);
    any_logprob |= rows[i].want_logprob != 0;
  }
  // Device layout in scratch: x [n, vocab] f32, e [n, vocab] f64, then rows, edits, biases, tokens, logprobs.
  const size_t x_bytes = round_up(static_cast<int64_t>(n) * vocab * 4, 256);
  const size_t e_bytes = static_cast<size_t>(n) * vocab * 8;
  const size_t rows_off = x_bytes + e_bytes;
  const size_t edits_off = round_up(static_cast<int64_t>(rows_off + rows.size() * sizeof(SampleRowDev)), 256);
  const size_t bias_off = round_up(static_cast<int64_t>(edits_off + edits.size() * sizeof(SampleEditDev)), 256);
  const size_t tok_off = round_up(static_cast<int64_t>(bias_off + biases.size() * sizeof(float)), 256);
  const size_t lp_off = round_up(static_cast<int64_t>(tok_off + n * sizeof(int32_t)), 256);
  const size_t total = lp_off + n * sizeof(float);
  void* buf = nullptr;
  CUDA_TRY(scratch.get(total, &buf, stream));
  uint8_t* base = static_cast<uint8_t*>(buf);
  // The parameters are small (a few KB): one staging vector, copied in stream order.
  std::vector<uint8_t> host(total - rows_off);
  std::memcpy(host.data(), rows.data(), rows.size() * sizeof(SampleRowDev));
  if (!edits.empty()) std::memcpy(host.data() + (edits_off - rows_off), edits.data(), edits.size() * sizeof(SampleEditDev));
  if (!biases.empty()) std::memcpy(host.data() + (bias_off - rows_off), biases.data(), biases.size() * sizeof(float));
  CUDA_TRY(cudaMemcpyAsync(base + rows_off, host.data(), tok_off - rows_off, cudaMemcpyHostToDevice, stream));
  auto* tok_dev = reinterpret_cast<int32_t*>(base + tok_off);
  auto* lp_dev = reinterpret_cast<float*>(base + lp_off);
  k_sample<<<n, kThreads, 0, stream>>>(tok_dev, any_logprob ? lp_dev : nullptr, logits, ld, vocab,
                                       reinterpret_cast<const SampleRowDev*>(base + rows_off),
                                       reinterpret_cast<const SampleEditDev*>(base + edits_off),
                                       reinterpret_cast<const float*>(base + bias_off), reinterpret_cast<float*>(base),
                                       reinterpret_cast<double*>(base + x_bytes));
  CUDA_TRY(cudaGetLastError());
  CUDA_TRY(cudaMemcpyAsync(tokens_host, tok_dev, n * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  if (any_logprob && logprobs_host) {
    CUDA_TRY(cudaMemcpyAsync(logprobs_host, lp_dev, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
  }
  // `host` (pageable) must outlive the upload, and the tokens are wanted now.
  return cudaStreamSynchronize(stream);
}

}  // namespace nemo::cuda
