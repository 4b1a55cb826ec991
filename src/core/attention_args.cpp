// Shape and type checks shared by every attention backend.
#include "core/check.h"
#include "dynamicrad/attention.h"

namespace dynamicrad {

void check_attention_args(const AttentionArgs& a, const BlockLayout* layout) {
  using detail::require;
  require(a.q.data != nullptr, "q", "data is null");
  const Shape& s = a.q.shape;
  require(s.batch >= 1 && s.tokens >= 1 && s.heads >= 1 && s.head_dim >= 1, "q",
          "shape " + to_string(s) + ": every size must be >= 1 [batch, tokens, heads, head_dim]");
  detail::require_shape(a.k, s, "k");
  detail::require_shape(a.v, s, "v");
  detail::require_shape(a.out, s, "out");
  require(a.k.dtype == a.q.dtype, "k", "dtype " + to_string(a.k.dtype) + " differs from q's " + to_string(a.q.dtype));
  require(a.v.dtype == a.q.dtype, "v", "dtype " + to_string(a.v.dtype) + " differs from q's " + to_string(a.q.dtype));
  if (layout == nullptr) return;
  require(layout->tokens == s.tokens, "layout.tokens",
          std::to_string(layout->tokens) + " does not match the tensors' " + std::to_string(s.tokens) + " tokens");
  require(layout->batch == s.batch, "layout.batch",
          std::to_string(layout->batch) + " does not match the tensors' batch " + std::to_string(s.batch));
  require(layout->heads == s.heads, "layout.heads",
          std::to_string(layout->heads) + " does not match the tensors' " + std::to_string(s.heads) + " heads");
}

}  // namespace dynamicrad
