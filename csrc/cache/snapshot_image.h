// The snapshot image: a Snapshot (sequence_state.h) as bytes, for Engine::export_snapshot and
// import_snapshot (session files, lib/ sessions). Little-endian, in this order:
//   8 bytes  magic "NEMOSNAP"
//   8 u64    version (1), n_past, Mamba layers, conv floats and SSM floats per Mamba layer
//            (NemotronHConfig::conv_state_floats, ssm_state_floats), attention layers, kv_dim, KV dtype
//   f32      per Mamba layer: its conv window, then its SSM state
//   KV rows  per attention layer, K then V: n_past token-major rows of kv_dim values in the KV dtype,
//            whatever layout the pool keeps (KvPool::read_rows / write_rows convert)
// An image is accepted only by a model of the same shapes and KV dtype.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/kv_pool.h"
#include "cache/sequence_state.h"
#include "core/device_memory.h"
#include "core/status.h"
#include "model/config.h"

namespace nemo {

// Writes `snap` (a snapshot of a model with `config`, its KV blocks in `pool`) as an image into *out.
void write_snapshot_image(const Snapshot& snap, const NemotronHConfig& config, const KvPool& pool,
                          DeviceMemory* memory, std::vector<uint8_t>* out);

// Reads an image holding exactly `tokens` (n_tokens of them) into a new snapshot: its Mamba state in
// `memory`, its KV rows in fresh blocks of `pool` (held by the snapshot). kInvalidArgument when the
// bytes are not an image of this model's shapes (wrong magic, version, shapes, KV dtype, size, token
// count), a token is outside the vocabulary or a value is not finite (issue #13: checked before
// anything is allocated); kContextOverflow past context_length; kOutOfMemory.
Status read_snapshot_image(const uint8_t* bytes, size_t size, const int32_t* tokens, int64_t n_tokens,
                           const NemotronHConfig& config, int64_t context_length, KvPool* pool,
                           DeviceMemory* memory, std::shared_ptr<Snapshot>* out);

}  // namespace nemo
