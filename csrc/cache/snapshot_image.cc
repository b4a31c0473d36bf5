#include "cache/snapshot_image.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace nemo {

namespace {
// The image's layout: snapshot_image.h.
constexpr char kSnapshotMagic[8] = {'N', 'E', 'M', 'O', 'S', 'N', 'A', 'P'};
constexpr uint64_t kSnapshotVersion = 1;
enum SnapField { kVersion, kNPast, kMamba, kConvFloats, kSsmFloats, kAttn, kKvDim, kDtype, kFields };

void put(std::vector<uint8_t>* out, const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  out->insert(out->end(), b, b + n);
}
}  // namespace

void write_snapshot_image(const Snapshot& snap, const NemotronHConfig& config, const KvPool& pool,
                          DeviceMemory* memory, std::vector<uint8_t>* out) {
  const uint64_t conv_n = config.conv_state_floats(), ssm_n = config.ssm_state_floats();
  uint64_t f[kFields] = {kSnapshotVersion, static_cast<uint64_t>(snap.n_past), snap.conv.size(), conv_n, ssm_n,
                         static_cast<uint64_t>(pool.n_layers()), static_cast<uint64_t>(config.kv_dim()),
                         static_cast<uint64_t>(pool.dtype())};
  out->clear();
  put(out, kSnapshotMagic, 8);
  put(out, f, sizeof(f));
  std::vector<float> host(std::max(conv_n, ssm_n));
  for (size_t i = 0; i < snap.conv.size(); ++i) {
    memory->to_host(host.data(), snap.conv[i], conv_n);
    put(out, host.data(), conv_n * 4);
    memory->to_host(host.data(), snap.ssm[i], ssm_n);
    put(out, host.data(), ssm_n * 4);
  }
  const int64_t B = KvPool::kBlockTokens, row = pool.row_bytes();
  std::vector<uint8_t> rows(static_cast<size_t>(B * row));
  for (int64_t l = 0; l < pool.n_layers(); ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      for (int64_t p0 = 0; p0 < snap.n_past; p0 += B) {
        const int64_t n = std::min(B, snap.n_past - p0);
        const int32_t b = snap.blocks[p0 / B];
        pool.read_rows(l, kv, b, n, rows.data());  // token-major in the image, whatever the pool holds
        put(out, rows.data(), static_cast<size_t>(n * row));
      }
    }
  }
}

Status read_snapshot_image(const uint8_t* bytes, size_t size, const int32_t* tokens, int64_t n_tokens,
                           const NemotronHConfig& config, int64_t context_length, KvPool* pool,
                           DeviceMemory* memory, std::shared_ptr<Snapshot>* out) {
  auto bad = [](const std::string& why) { return Status(StatusCode::kInvalidArgument, "snapshot image: " + why); };
  if (size < 8 + sizeof(uint64_t) * kFields || std::memcmp(bytes, kSnapshotMagic, 8) != 0) {
    return bad("not a snapshot image");
  }
  uint64_t f[kFields];
  std::memcpy(f, bytes + 8, sizeof(f));
  const uint64_t conv_n = config.conv_state_floats(), ssm_n = config.ssm_state_floats();
  size_t n_mamba = 0;
  for (BlockKind k : config.layers) n_mamba += k == BlockKind::kMamba;
  if (f[kVersion] != kSnapshotVersion) return bad("unsupported version " + std::to_string(f[kVersion]));
  if (f[kMamba] != n_mamba || f[kConvFloats] != conv_n || f[kSsmFloats] != ssm_n ||
      f[kAttn] != static_cast<uint64_t>(pool->n_layers()) ||
      f[kKvDim] != static_cast<uint64_t>(config.kv_dim())) {
    return bad("its layer shapes do not match this model");
  }
  if (f[kDtype] != static_cast<uint64_t>(pool->dtype())) {
    return bad("it holds a KV cache of another dtype than this model's kvDtype");
  }
  const int64_t n_past = static_cast<int64_t>(f[kNPast]);
  if (n_past != n_tokens) return bad("it covers " + std::to_string(n_past) + " positions but " + std::to_string(n_tokens) + " tokens were given");
  if (n_past > context_length) return Status(StatusCode::kContextOverflow, "the snapshot holds more tokens than the context length");
  const int64_t B = KvPool::kBlockTokens, row = pool->row_bytes();
  const size_t expected = 8 + sizeof(f) + n_mamba * (conv_n + ssm_n) * 4 +
                          static_cast<size_t>(2 * pool->n_layers() * n_past * row);
  if (size != expected) return bad("it is " + std::to_string(size) + " bytes, expected " + std::to_string(expected));
  // Issue #13: a crafted image can hold any bits. Token ids outside the vocabulary and NaN/Inf state
  // would poison every later step of the sequence, so both are refused before anything is allocated.
  for (int64_t i = 0; i < n_tokens; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config.vocab_size)
      return bad("token " + std::to_string(i) + " is " + std::to_string(tokens[i]) + ", outside the vocabulary [0, " +
                 std::to_string(config.vocab_size) + ")");
  }
  {
    const uint8_t* q = bytes + 8 + sizeof(f);
    const size_t state_floats = n_mamba * (conv_n + ssm_n);
    const int64_t at_state = first_non_finite(q, DType::F32, 0, static_cast<int64_t>(state_floats));
    if (at_state >= 0) return bad("its Mamba state holds a non-finite value (float " + std::to_string(at_state) + ")");
    q += state_floats * 4;
    const size_t kv_bytes = size - (q - bytes), kv_size = dtype_size(pool->dtype());
    const int64_t at_kv = first_non_finite(q, pool->dtype(), 0, static_cast<int64_t>(kv_bytes / kv_size));
    if (at_kv >= 0) {
      return bad("its KV cache rows hold a non-finite value (byte " + std::to_string(at_kv * kv_size) + ")");
    }
  }

  auto snap = std::make_shared<Snapshot>(memory, pool);
  snap->n_past = n_past;
  snap->tokens.assign(tokens, tokens + n_tokens);
  const uint8_t* p = bytes + 8 + sizeof(f);
  std::vector<float> host(std::max(conv_n, ssm_n));
  for (size_t i = 0; i < n_mamba; ++i) {
    float* c = memory->alloc(conv_n);
    float* s = memory->alloc(ssm_n);
    snap->conv.push_back(c);
    snap->ssm.push_back(s);
    if (!c || !s) return Status(StatusCode::kOutOfMemory, "cannot allocate a snapshot");
    std::memcpy(host.data(), p, conv_n * 4);
    memory->from_host(c, host.data(), conv_n);
    p += conv_n * 4;
    std::memcpy(host.data(), p, ssm_n * 4);
    memory->from_host(s, host.data(), ssm_n);
    p += ssm_n * 4;
  }
  snap->state_bytes = static_cast<int64_t>(n_mamba * (conv_n + ssm_n) * 4);
  for (int64_t i = 0; i < (n_past + B - 1) / B; ++i) {
    const int32_t b = pool->allocate(KvPool::Holder::kSnapshot);
    if (b < 0) return Status(StatusCode::kOutOfMemory, "the KV cache pool is full");
    snap->blocks.push_back(b);
  }
  for (int64_t l = 0; l < pool->n_layers(); ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      for (int64_t p0 = 0; p0 < n_past; p0 += B) {
        const int64_t n = std::min(B, n_past - p0);
        const int32_t b = snap->blocks[p0 / B];
        pool->write_rows(l, kv, b, n, p);
        p += n * row;
      }
    }
  }
  *out = std::move(snap);
  return Status::Ok();
}


}  // namespace nemo
