// Quality metrics of a sparse attention against dense attention.
#pragma once

#include "dynamicrad/attention.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad {

// ||approx - exact||_2 / ||exact||_2 over all elements (0 when both are zero). Shapes must match.
double relative_l2_error(const ConstTensor& approx, const ConstTensor& exact);

// Attention-mass recall of a layout: for every (batch, head, query token), the share of the exact
// softmax probability that falls on keys inside the layout's kept blocks, averaged. Exact (double,
// O(batch * heads * tokens^2 * head_dim)): for tests and small geometries.
double attention_mass_recall(const ConstTensor& q, const ConstTensor& k, const BlockLayout& layout,
                             const AttentionOptions& options);

}  // namespace dynamicrad
