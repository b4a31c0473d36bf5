// The load-time self-check of lib/selfcheck.ts, in C++ on the Engine API, for machines without Node
// (scripts/gpu-check.sh on a GPU machine whose image has nvcc and CMake but no Node): the same script, the
// same comparisons and the same tolerances, device engine against a CPU engine, on a checkpoint with every
// block kind (default test/fixtures/golden/tiny-long, 'M-M*-M*-').
//
//   1. prefill: a 100-token prompt in two chunks (70 + 30 tokens), every position's log-probs (KV blocks
//      of 64 positions: attention reads two blocks, the second chunk continues the sequence);
//   2. decode: six one-token steps (fixed tokens), log-probs and greedy tokens;
//   3. snapshot after the prompt, restored into a new sequence: its next row against the original's
//      (same engine, 1e-5) and against the CPU's;
//   4. the sampler: Engine::step (on CUDA: the device sampler) against sample_token on the same logits,
//      seed and draw, for greedy, temperature, top-k + top-p + min-p, top-p + logit bias, 4 draws each.
// Tolerances on log-probs: 1e-3 for matmul precision exact (CUDA: bf16x2), 0.2 for fast (bf16); greedy
// tokens must agree where the CPU's top two are more than 2 x tolerance apart; sampled tokens exactly.
//
// Usage: nemotron_cuda_selfcheck [--model DIR] [--device cuda|cuda:N|cpu] [--perturb none|logprob|token]
// --device cpu runs it CPU against CPU (no GPU needed); --perturb corrupts the device side's output (one
// logit of the first decode row + 4 x tolerance, or the first sampled token) and must make it fail.
// Exit status: 0 pass, 1 a check failed, 2 usage or load error.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/engine.h"
#include "engine/sampler.h"

using nemo::Engine;
using nemo::EngineOptions;
using nemo::SamplingParams;
using nemo::Status;

namespace {

constexpr int64_t kPrompt = 100, kFirstChunk = 70, kDecode = 6, kDraws = 4;

struct Run {
  std::vector<double> prefill, decode, restored;  // log-probs
  std::vector<int32_t> sampled, sampled_want;
};

std::vector<double> log_softmax_rows(const std::vector<float>& x, int64_t V) {
  std::vector<double> out(x.size());
  for (size_t r = 0; r < x.size() / V; ++r) {
    const float* row = x.data() + r * V;
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(row[i]));
    for (int64_t i = 0; i < V; ++i) sum += std::exp(row[i] - mx);
    const double lse = mx + std::log(sum);
    for (int64_t i = 0; i < V; ++i) out[r * V + i] = row[i] - lse;
  }
  return out;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b, size_t n) {
  if (a.size() < n || b.size() < n) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;
  }
  return m;
}

std::vector<int32_t> script_tokens(int64_t n, int64_t salt, int64_t V) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(1 + (i * 7919 + salt * 104729 + 17) % (V - 1));
  return out;
}

std::vector<SamplingParams> samplings() {
  std::vector<SamplingParams> s(4);
  s[1].temperature = 0.8f;
  s[1].seed = 7;
  s[2].temperature = 1.3f;
  s[2].top_k = 20;
  s[2].top_p = 0.9f;
  s[2].min_p = 0.02f;
  s[2].seed = 11;
  s[3].temperature = 0.7f;
  s[3].top_p = 0.95f;
  s[3].logit_bias = {{5, 3.0f}, {6, -100.0f}};
  s[3].seed = 3;
  return s;
}

#define TRY(call)                                                                                   \
  do {                                                                                              \
    const Status _st = (call);                                                                      \
    if (!_st.ok()) {                                                                                \
      std::fprintf(stderr, "%s: %s: %s\n", #call, nemo::status_code_name(_st.code()), _st.message().c_str()); \
      return false;                                                                                 \
    }                                                                                               \
  } while (0)

// The script on one engine; `perturb` (0 none, 1 logprob, 2 token) corrupts its output, `eps` the logit.
bool run_script(Engine& e, int perturb, float eps, Run* out) {
  const int64_t V = e.config().vocab_size;
  const auto prompt = script_tokens(kPrompt, 1, V), dec = script_tokens(kDecode, 2, V);
  int32_t seq = -1, snap = -1, restored = -1;
  TRY(e.create_sequence(&seq));
  std::vector<float> a, b, row;
  TRY(e.evaluate(seq, prompt.data(), kFirstChunk, true, &a));
  TRY(e.evaluate(seq, prompt.data() + kFirstChunk, kPrompt - kFirstChunk, true, &b));
  a.insert(a.end(), b.begin(), b.end());
  out->prefill = log_softmax_rows(a, V);
  TRY(e.snapshot_sequence(seq, &snap));
  std::vector<float> decode_logits;
  for (int64_t j = 0; j < kDecode; ++j) {
    TRY(e.evaluate(seq, &dec[j], 1, false, &row));
    if (j == 0 && perturb == 1) row[5] += eps;
    decode_logits.insert(decode_logits.end(), row.begin(), row.end());
  }
  out->decode = log_softmax_rows(decode_logits, V);
  TRY(e.create_sequence(&restored));
  TRY(e.restore_sequence(restored, snap));
  TRY(e.evaluate(restored, &dec[0], 1, false, &row));
  out->restored = log_softmax_rows(row, V);
  std::vector<int32_t> history(prompt);
  history.push_back(dec[0]);
  bool first = true;
  for (const SamplingParams& sp : samplings()) {
    for (int64_t draw = 0; draw < kDraws; ++draw) {
      int32_t s = -1, twin = -1;
      TRY(e.create_sequence(&s));
      TRY(e.create_sequence(&twin));
      TRY(e.restore_sequence(s, snap));
      TRY(e.restore_sequence(twin, snap));
      TRY(e.evaluate(twin, &dec[0], 1, false, &row));
      std::vector<Engine::StepResult> res;
      Engine::StepRequest req{s, {dec[0]}, true, sp, static_cast<int64_t>(history.size()), static_cast<uint64_t>(draw), {}};
      TRY(e.step({req}, &res));
      int32_t tok = res.empty() ? -1 : res[0].token;
      if (first && perturb == 2 && tok >= 0) tok = static_cast<int32_t>((tok + 1) % V);
      first = false;
      out->sampled.push_back(tok);
      out->sampled_want.push_back(nemo::sample_token(row.data(), V, sp, history.data(), static_cast<int64_t>(history.size()),
                                                     static_cast<int64_t>(history.size()), static_cast<uint64_t>(draw)));
      TRY(e.free_sequence(s));
      TRY(e.free_sequence(twin));
    }
  }
  TRY(e.free_sequence(seq));
  TRY(e.free_sequence(restored));
  TRY(e.drop_snapshot(snap));
  return true;
}

EngineOptions options(const std::string& device, nemo::cpu::MatmulPrecision precision) {
  EngineOptions o;
  o.n_threads = 1;
  o.context_length = 256;
  o.max_sequences = 8;
  o.max_batch_tokens = 128;
  o.kv_dtype = nemo::DType::F16;
  o.cache_bytes = 16 << 20;
  o.device = device;
  o.matmul_precision = precision;
  return o;
}

int64_t argmax_gap(const std::vector<double>& x, size_t at, int64_t V, double* gap) {
  int64_t best = 0;
  double second = -INFINITY;
  for (int64_t i = 1; i < V; ++i) {
    if (x[at + i] > x[at + best]) {
      second = x[at + best];
      best = i;
    } else if (x[at + i] > second) {
      second = x[at + i];
    }
  }
  *gap = x[at + best] - second;
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "test/fixtures/golden/tiny-long", device = "cuda", perturb_name = "none";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model") model = v;
    else if (a == "--device") device = v;
    else if (a == "--perturb") perturb_name = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const int perturb = perturb_name == "logprob" ? 1 : perturb_name == "token" ? 2 : 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> ref;
  Status st = Engine::load(model, options("cpu", nemo::cpu::MatmulPrecision::kExact), &ref);
  if (!st.ok()) {
    std::fprintf(stderr, "load %s (cpu): %s\n", model.c_str(), st.message().c_str());
    return 2;
  }
  Run cpu;
  if (!run_script(*ref, 0, 0, &cpu)) return 2;
  const int64_t V = ref->config().vocab_size;
  int failures = 0;
  std::printf("self-check: %s (%s) against the CPU engine, model %s (%s)%s\n", device.c_str(),
              device == "cpu" ? "CPU standing in for the device" : "device", model.c_str(),
              ref->config().hybrid_override_pattern.c_str(), perturb ? (", perturbed: " + perturb_name).c_str() : "");
  for (const auto& [name, precision, tol] : {std::tuple<const char*, nemo::cpu::MatmulPrecision, double>{"exact", nemo::cpu::MatmulPrecision::kExact, 1e-3},
                                             std::tuple<const char*, nemo::cpu::MatmulPrecision, double>{"fast", nemo::cpu::MatmulPrecision::kFast, 0.2}}) {
    const auto t1 = std::chrono::steady_clock::now();
    std::unique_ptr<Engine> dev;
    st = Engine::load(model, options(device, precision), &dev);
    if (!st.ok()) {
      std::fprintf(stderr, "load %s (%s): %s\n", model.c_str(), device.c_str(), st.message().c_str());
      return 2;
    }
    Run got;
    if (!run_script(*dev, perturb, static_cast<float>(4 * tol), &got)) return 2;
    int greedy = 0, sampler = 0;
    for (int64_t j = 0; j < kDecode; ++j) {
      double gap_cpu = 0, gap_dev = 0;
      const int64_t want = argmax_gap(cpu.decode, static_cast<size_t>(j * V), V, &gap_cpu);
      const int64_t have = argmax_gap(got.decode, static_cast<size_t>(j * V), V, &gap_dev);
      if (want != have && gap_cpu > 2 * tol) ++greedy;
    }
    for (size_t i = 0; i < got.sampled.size(); ++i) sampler += got.sampled[i] != got.sampled_want[i];
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
    auto check = [&](const char* what, double measured, double limit) {
      const bool ok = measured <= limit;
      if (!ok) ++failures;
      std::printf("  %-5s %-36s %10.3e  (tol %.0e)  %s\n", name, what, measured, limit, ok ? "PASS" : "FAIL");
    };
    check("prefill log-probs (100 positions)", max_abs_diff(got.prefill, cpu.prefill, cpu.prefill.size()), tol);
    check("decode log-probs (6 steps)", max_abs_diff(got.decode, cpu.decode, cpu.decode.size()), tol);
    check("restored sequence vs CPU", max_abs_diff(got.restored, cpu.decode, static_cast<size_t>(V)), tol);
    check("restored sequence vs its original", max_abs_diff(got.restored, got.decode, static_cast<size_t>(V)), 1e-5);
    check("greedy tokens that differ", greedy, 0);
    check("sampled tokens that differ (of 16)", sampler, 0);
    std::printf("  %-5s %.0f ms\n", name, ms);
  }
  const double total = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("self-check %s in %.0f ms (%s)\n", failures ? "FAIL" : "PASS", total, failures ? "a check failed" : "every check within tolerance");
  return failures ? 1 : 0;
}
