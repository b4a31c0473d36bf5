#include "engine/sampler.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace nemo {

namespace {

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A candidate after temperature: e = exp((x - x_max) / T) (the unnormalised probability) and its id.
struct Cand {
  double e;
  int32_t id;
};
// The sampling order: descending probability, ties by lower id.
inline bool cand_before(const Cand& a, const Cand& b) { return a.e > b.e || (a.e == b.e && a.id < b.id); }

// A logit and its id, for top-k selection: descending logit, ties by lower id.
struct Scored {
  float x;
  int32_t id;
};
inline bool scored_before(const Scored& a, const Scored& b) { return a.x > b.x || (a.x == b.x && a.id < b.id); }

// Per-thread buffers, so a call allocates nothing once warm.
struct Scratch {
  std::vector<float> x;
  std::vector<Cand> cand, cand2;
  std::vector<Scored> scored;
  std::vector<int32_t> ids;
  std::vector<uint16_t> key;  // each token's bucket (draw_bucketed)
  std::vector<double> mass;
  std::vector<int64_t> count;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Position j (in the order cand_before) of the first entry whose running mass, summed in that order,
// passes `t` (strict: > t; otherwise >= t); n - 1 when none does (rounding). On return a[0, j] hold
// the j + 1 first entries of the order, a[j] last among them, so a[0, j] is that prefix as a set.
// Halving with nth_element: O(n) expected, with no full sort.
int64_t find_crossing(Cand* a, int64_t n, double t, bool strict) {
  auto passes = [&](double mass) { return strict ? mass > t : mass >= t; };
  int64_t lo = 0, hi = n;
  double base = 0.0;  // mass of a[0, lo), every entry of which comes before a[lo, n)
  while (hi - lo > 32) {
    const int64_t mid = lo + (hi - lo) / 2;
    std::nth_element(a + lo, a + mid, a + hi, cand_before);
    double mass = 0.0;
    for (int64_t i = lo; i < mid; ++i) mass += a[i].e;
    if (passes(base + mass)) {
      hi = mid;  // the crossing is inside the better half
    } else {
      base += mass;
      lo = mid;
    }
  }
  std::sort(a + lo, a + hi, cand_before);
  for (int64_t j = lo; j < hi; ++j) {
    base += a[j].e;
    if (passes(base)) return j;
  }
  return hi - 1;
}

// Steps 2-4 of the header: bias, repetition penalty, presence/frequency penalties.
void apply_bias_and_penalties(float* x, int64_t vocab, const SamplingParams& p, const int32_t* history,
                              int64_t n_history, int64_t n_prompt, std::vector<int32_t>& ids) {
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= vocab || std::isnan(bias)) continue;
    if (bias <= kBanBias) {
      x[id] = kNegInf;
    } else {
      x[id] += bias;
    }
  }
  if (history == nullptr || n_history <= 0) return;
  const int64_t np = std::clamp<int64_t>(n_prompt, 0, n_history);
  auto collect = [&](int64_t from) {
    ids.clear();
    for (int64_t i = from; i < n_history; ++i) {
      if (history[i] >= 0 && history[i] < vocab) ids.push_back(history[i]);
    }
    std::sort(ids.begin(), ids.end());
  };

  const float rp = p.repetition_penalty;
  if (std::isfinite(rp) && rp > 0.0f && rp != 1.0f) {
    collect(0);
    const auto end = std::unique(ids.begin(), ids.end());
    for (auto it = ids.begin(); it != end; ++it) {
      float& v = x[*it];
      v = v > 0.0f ? v / rp : v * rp;
    }
  }

  const double presence = std::isfinite(p.presence_penalty) ? p.presence_penalty : 0.0;
  const double frequency = std::isfinite(p.frequency_penalty) ? p.frequency_penalty : 0.0;
  if ((presence != 0.0 || frequency != 0.0) && np < n_history) {
    collect(np);
    for (size_t i = 0; i < ids.size();) {
      size_t j = i;
      while (j < ids.size() && ids[j] == ids[i]) ++j;
      float& v = x[ids[i]];
      v = static_cast<float>(static_cast<double>(v) - presence - frequency * static_cast<double>(j - i));
      i = j;
    }
  }
}

// e = exp((x - x_max) / T) in double: the max-subtracted softmax numerator (e_max = 1). One function,
// so a token's weight recomputed later is bit-identical to the one summed into Z.
struct Weight {
  double top;    // x_max
  double inv_t;  // 1 / temperature
  double operator()(float v) const { return std::exp((static_cast<double>(v) - top) * inv_t); }
};

struct Cut {
  bool use_top_p = false;
  double top_p = 1.0;
  double min_e = 0.0;  // min-p as a bound on e
};

// Sets up to this size go through a plain candidate array; larger ones are bucketed.
constexpr int64_t kSmallSet = 1024;

// Steps 9-12 for a small set S (the top-k heap): softmax over S, min-p, top-p, inverse CDF.
int32_t draw_small(const std::vector<Scored>& set, const Weight& w, const Cut& cut, double u,
                   std::vector<Cand>& cand) {
  cand.clear();
  double z = 0.0;
  for (const Scored& c : set) {
    const double e = w(c.x);
    z += e;
    if (e > 0.0 && e >= cut.min_e) cand.push_back({e, c.id});
  }
  int64_t n = static_cast<int64_t>(cand.size());  // >= 1: the argmax has e = 1
  if (cut.use_top_p) n = find_crossing(cand.data(), n, cut.top_p * z, false) + 1;
  double kept = 0.0;
  for (int64_t i = 0; i < n; ++i) kept += cand[i].e;
  return cand[find_crossing(cand.data(), n, u * kept, true)].id;
}

// Buckets of e in (0, 1], in sampling order (bucket 0 first): 64 per binade from the double's exponent
// and top 6 mantissa bits (larger e -> smaller bucket), binades 2^0 .. 2^-63; all smaller e share the
// tail bucket. A larger e never lands in a later bucket, so the buckets cut the sampling order into
// consecutive runs and only the run holding a crossing needs ordering.
constexpr int kBinadeBuckets = 64;
constexpr int kBinades = 64;
constexpr int kTail = kBinadeBuckets * kBinades;
constexpr int kBuckets = kTail + 1;
constexpr uint16_t kNoBucket = 0xffff;

// e is in [0, 1] (x <= x_max and 1 / T > 0; NaN logits are -inf by then), so binade >= 0.
inline int bucket_of(double e) {
  uint64_t bits;
  std::memcpy(&bits, &e, sizeof bits);
  const int binade = 1023 - static_cast<int>(bits >> 52);  // 0 for e = 1, 1 for [1/2, 1), ...
  if (binade >= kBinades) return kTail;
  return binade * kBinadeBuckets + (kBinadeBuckets - 1 - static_cast<int>((bits >> 46) & 63));
}

// Steps 9-12 over every token with x > -inf: one pass computes Z and the mass of each bucket; the top-p
// crossing and the draw then each order the members of one bucket only. Min-p keeps a prefix of the
// buckets: those before bucket_of(min_e) whole, that one's members with e >= min_e, none after.
// The pass is branch-free in the data (a token's membership selects, it does not jump).
int32_t draw_bucketed(const float* x, int64_t vocab, const Weight& w, const Cut& cut, double u,
                      Scratch& s) {
  const int min_bucket = cut.min_e > 0.0 ? bucket_of(cut.min_e) : -1;
  const int limit = cut.min_e > 0.0 ? min_bucket + 1 : kBuckets;  // buckets at or past it hold nothing kept
  s.key.resize(static_cast<size_t>(vocab));
  s.mass.assign(kBuckets, 0.0);
  s.count.assign(kBuckets, 0);
  uint16_t* key = s.key.data();
  double* mass = s.mass.data();
  int64_t* count = s.count.data();
  double z = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    const double e = x[i] == kNegInf ? 0.0 : w(x[i]);
    z += e;
    const int b = bucket_of(e);  // e = 0 lands in the tail; it is never a member
    const bool member = e > 0.0 && (b != min_bucket || e >= cut.min_e);
    key[i] = member ? static_cast<uint16_t>(b) : kNoBucket;
    mass[b] += member ? e : 0.0;
    count[b] += member;
  }
  // The tokens of bucket b, unordered, with their weights.
  auto gather = [&](int b, std::vector<Cand>& out) {
    out.resize(static_cast<size_t>(count[b]));
    size_t n = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      if (key[i] == b) out[n++] = {w(x[i]), static_cast<int32_t>(i)};
    }
  };

  // Step 11: buckets [0, cut_bucket) are kept whole; of bucket cut_bucket (when < limit), the first
  // n_partial entries of s.cand after find_crossing. Bucket masses are summed in id order, not in
  // sampling order: the difference is rounding, at the level of a few ulps of Z.
  int cut_bucket = limit;
  int64_t n_partial = 0;
  double kept = 0.0;
  if (cut.use_top_p) {
    const double t = cut.top_p * z;
    for (int b = 0; b < limit; ++b) {
      if (count[b] == 0) continue;
      if (kept + mass[b] >= t) {
        cut_bucket = b;
        break;
      }
      kept += mass[b];
    }
    if (cut_bucket < limit) {
      gather(cut_bucket, s.cand);
      n_partial = find_crossing(s.cand.data(), count[cut_bucket], t - kept, false) + 1;
      for (int64_t i = 0; i < n_partial; ++i) kept += s.cand[i].e;
    }
  } else {
    for (int b = 0; b < limit; ++b) kept += mass[b];
  }

  // Step 12: the first kept token whose running mass passes u * kept.
  const double target = u * kept;
  double acc = 0.0;
  int last = -1;
  for (int b = 0; b < cut_bucket; ++b) {
    if (count[b] == 0) continue;
    if (acc + mass[b] > target) {
      gather(b, s.cand2);
      return s.cand2[find_crossing(s.cand2.data(), count[b], target - acc, true)].id;
    }
    acc += mass[b];
    last = b;
  }
  if (cut_bucket < limit) {
    return s.cand[find_crossing(s.cand.data(), n_partial, target - acc, true)].id;
  }
  // Rounding carried the target past the end: the last kept token.
  gather(last, s.cand2);
  return s.cand2[find_crossing(s.cand2.data(), count[last], std::numeric_limits<double>::infinity(), true)].id;
}

}  // namespace

double counter_uniform(uint64_t seed, uint64_t counter) {
  const uint64_t bits = mix64(mix64(seed) ^ (counter * 0xd1342543de82ef95ull + 1));
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& p,
                     const int32_t* history, int64_t n_history, int64_t n_prompt, uint64_t step,
                     const uint32_t* allow) {
  if (vocab <= 0 || logits == nullptr) return 0;
  Scratch& s = scratch();
  s.x.assign(logits, logits + vocab);
  float* x = s.x.data();

  apply_bias_and_penalties(x, vocab, p, history, n_history, n_prompt, s.ids);
  if (allow != nullptr) {  // step 4b: the grammar's mask
    for (int64_t w = 0; w * 32 < vocab; ++w) {
      const uint32_t bits = allow[w];
      if (bits == 0xffffffffu) continue;
      const int64_t end = std::min<int64_t>(vocab, (w + 1) * 32);
      for (int64_t i = w * 32; i < end; ++i) {
        if (!((bits >> (i & 31)) & 1u)) x[i] = kNegInf;
      }
    }
  }

  // Step 5 (NaN -> -inf, +inf -> FLT_MAX) fused with the argmax (lowest id on ties).
  float x_max = kNegInf;
  int64_t arg = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    float v = x[i];
    if (std::isnan(v)) {
      v = kNegInf;
    } else if (v == std::numeric_limits<float>::infinity()) {
      v = FLT_MAX;
    }
    x[i] = v;
    if (v > x_max) {
      x_max = v;
      arg = i;
    }
  }
  if (arg < 0) {  // nothing finite is left
    auto allowed = [&](int64_t i) { return allow == nullptr || ((allow[i >> 5] >> (i & 31)) & 1u); };
    for (int64_t i = 0; i < vocab; ++i) {
      if (allowed(i) && std::isfinite(logits[i])) return static_cast<int32_t>(i);
    }
    for (int64_t i = 0; i < vocab; ++i) {
      if (allowed(i)) return static_cast<int32_t>(i);
    }
    return 0;
  }
  if (!(p.temperature > 0.0f)) return static_cast<int32_t>(arg);

  Weight w{static_cast<double>(x_max), 1.0 / static_cast<double>(p.temperature)};
  Cut cut;
  cut.use_top_p = p.top_p < 1.0f;  // NaN: off
  cut.top_p = std::max(static_cast<double>(p.top_p), 0.0);
  // e_i >= min_p is the min-p rule itself (p_i / p_max = e_i); clamped so the argmax always survives.
  cut.min_e = p.min_p > 0.0f ? std::min(static_cast<double>(p.min_p), 1.0) : 0.0;  // NaN: off
  const double u = counter_uniform(p.seed, step);

  if (p.top_k > 0 && p.top_k < vocab) {
    // Step 8: the top_k tokens by logit. A heap of the k best so far (worst on top) for small k: a scan
    // in id order replaces the top only on a strictly larger logit, so ties keep the lower id.
    const int64_t k = p.top_k;
    std::vector<Scored>& h = s.scored;
    h.clear();
    if (k <= kSmallSet) {
      for (int64_t i = 0; i < vocab; ++i) {
        const float v = x[i];
        if (v == kNegInf) continue;
        if (static_cast<int64_t>(h.size()) < k) {
          h.push_back({v, static_cast<int32_t>(i)});
          std::push_heap(h.begin(), h.end(), scored_before);
        } else if (v > h.front().x) {
          std::pop_heap(h.begin(), h.end(), scored_before);
          h.back() = {v, static_cast<int32_t>(i)};
          std::push_heap(h.begin(), h.end(), scored_before);
        }
      }
      return draw_small(h, w, cut, u, s.cand);
    }
    for (int64_t i = 0; i < vocab; ++i) {
      if (x[i] != kNegInf) h.push_back({x[i], static_cast<int32_t>(i)});
    }
    if (static_cast<int64_t>(h.size()) > k) {
      std::nth_element(h.begin(), h.begin() + k, h.end(), scored_before);
      h.resize(static_cast<size_t>(k));
    }
    // A large set: mask everything else to -inf and take the bucketed path.
    std::fill(x, x + vocab, kNegInf);
    for (const Scored& c : h) x[c.id] = c.x;
    return draw_bucketed(x, vocab, w, cut, u, s);
  }
  return draw_bucketed(x, vocab, w, cut, u, s);
}

}  // namespace nemo
