// check_tensors_finite: the `checkTensors` load option (issue #13). A NaN or Inf in the weights does not
// stop the forward pass: it turns every logit it reaches into NaN, and generation then fails far from the
// cause. This scan names the first tensor holding one, before anything runs. It reads every weight byte
// once (memory bandwidth: about 2-10 s for a 9B bf16 checkpoint), which is why it is opt-in.
#pragma once
#include <string>

#include "core/status.h"

namespace nemo {

struct ModelWeights;
struct NemotronHConfig;

// Scans every tensor of `weights` (plain floats element by element; block-quantized types through their
// f16 scales) on a pool of `n_threads` threads (0 = one per hardware thread). The first tensor in
// checkpoint order holding a non-finite value gives kInvalidCheckpoint naming it, the element index and
// the value.
Status check_tensors_finite(const NemotronHConfig& config, const ModelWeights& weights, int n_threads);

// Loads the checkpoint at `path` (a folder or a .gguf file; mapping only, nothing is copied but the small
// vectors) and scans it as above. Load errors are returned as load_checkpoint reports them.
Status check_checkpoint_finite(const std::string& path, int n_threads);

}  // namespace nemo
