// How one engine step is packed (continuous batching). Every live request asks for its pending input to
// be fed; the planner decides which part of it runs in this forward pass:
//   - decode items (one pending token) always run, so no stream stalls behind a long prompt;
//   - longer inputs (prompts, forced tokens) run in pieces that end at multiples of `chunk` in the
//     sequence's absolute positions (and at requested snapshot positions), in request order, while the
//     step's row budget lasts.
// Piece boundaries depend only on the sequence's own position, never on what else is in the batch, so
// a request computes exactly the same numbers alone or batched with others.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace nemo {

struct PlanInput {
  int64_t n_past;    // tokens the sequence already holds
  int64_t pending;   // tokens waiting to be fed (>= 1)
  int64_t next_cut;  // a piece must also end here (a snapshot position), or INT64_MAX
};

struct PlanItem {
  size_t request;    // index into the inputs
  int64_t count;     // tokens of its pending input fed in this step (0 = deferred)
};

// budget: rows one forward pass may hold (>= chunk + number of decode items for progress).
std::vector<PlanItem> plan_step(const std::vector<PlanInput>& inputs, int64_t chunk, int64_t budget);

}  // namespace nemo
