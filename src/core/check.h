// Internal helpers that turn failed input checks into dynamicrad::Error.
#pragma once

#include <string>

#include "dynamicrad/error.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad::detail {

inline void require(bool ok, const std::string& field, const std::string& problem) {
  if (!ok) throw Error(field, problem);
}

// Checks that a tensor has data and the expected shape.
inline void require_shape(const ConstTensor& t, const Shape& expected, const std::string& name) {
  require(t.data != nullptr, name, "data is null");
  require(t.shape == expected, name,
          "shape " + to_string(t.shape) + " does not match the expected " + to_string(expected) +
              " [batch, tokens, heads, head_dim]");
}

}  // namespace dynamicrad::detail

namespace dynamicrad {
struct AttentionArgs;
struct BlockLayout;

namespace detail {
// check_attention_args() without the memory checks (for callers that pass a tensor twice on purpose).
void check_attention_shapes(const AttentionArgs& args, const BlockLayout* layout);
}  // namespace detail
}  // namespace dynamicrad
