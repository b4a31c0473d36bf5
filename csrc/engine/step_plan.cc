#include "engine/step_plan.h"

#include <algorithm>

namespace nemo {

std::vector<PlanItem> plan_step(const std::vector<PlanInput>& inputs, int64_t chunk, int64_t budget) {
  std::vector<PlanItem> plan(inputs.size());
  int64_t used = 0;
  // Decodes first: one row each.
  for (size_t i = 0; i < inputs.size(); ++i) {
    plan[i] = PlanItem{i, 0};
    if (inputs[i].pending == 1 && used < budget) {
      plan[i].count = 1;
      ++used;
    }
  }
  // Then longer inputs in request order, each up to its next chunk boundary.
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].pending <= 1) continue;
    const int64_t to_boundary = chunk - inputs[i].n_past % chunk;
    const int64_t to_cut = inputs[i].next_cut - inputs[i].n_past;
    const int64_t piece = std::min({inputs[i].pending, to_boundary, to_cut});
    if (used + piece > budget) continue;  // deferred whole: shrinking it would move a boundary
    plan[i].count = piece;
    used += piece;
  }
  return plan;
}

}  // namespace nemo
