// Shape, type and memory checks shared by every attention backend.
#include <cstdint>

#include "core/check.h"
#include "dynamicrad/attention.h"

namespace dynamicrad {
namespace {

// [begin, end) of a tensor's bytes.
struct Bytes {
  std::uintptr_t begin = 0, end = 0;
};

Bytes bytes_of(const void* data, std::int64_t count, std::size_t element) {
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  return {begin, begin + static_cast<std::uintptr_t>(count) * element};
}

bool overlap(const Bytes& a, const Bytes& b) { return a.begin < b.end && b.begin < a.end; }

}  // namespace

namespace detail {

void check_attention_shapes(const AttentionArgs& a, const BlockLayout* layout) {
  require(a.q.data != nullptr, "q", "data is null");
  const Shape& s = a.q.shape;
  require(s.batch >= 1 && s.tokens >= 1 && s.heads >= 1 && s.head_dim >= 1, "q",
          "shape " + to_string(s) + ": every size must be >= 1 [batch, tokens, heads, head_dim]");
  require_shape(a.k, s, "k");
  require_shape(a.v, s, "v");
  require_shape(a.out, s, "out");
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

}  // namespace detail

void check_attention_args(const AttentionArgs& a, const BlockLayout* layout) {
  detail::check_attention_shapes(a, layout);
  // A row's output is written while other rows still read K and V (and the log-sum-exp after its
  // row): out and lse must not share memory with K, V or each other. out may be q itself (each row
  // reads its own queries before it writes them), not a part of it.
  const Shape& s = a.q.shape;
  const Bytes q = bytes_of(a.q.data, s.elements(), dtype_size(a.q.dtype));
  const Bytes k = bytes_of(a.k.data, s.elements(), dtype_size(a.k.dtype));
  const Bytes v = bytes_of(a.v.data, s.elements(), dtype_size(a.v.dtype));
  const Bytes out = bytes_of(a.out.data, s.elements(), dtype_size(a.out.dtype));
  const bool out_is_q = a.out.data == a.q.data && a.out.dtype == a.q.dtype;
  detail::require(!overlap(out, k) && !overlap(out, v), "out",
                  "shares memory with k or v, which other rows still read while it is written");
  detail::require(out_is_q || !overlap(out, q), "out",
                  "overlaps q without being q itself (same data and dtype)");
  if (a.lse != nullptr) {
    const Bytes lse = bytes_of(a.lse, s.batch * s.heads * s.tokens, sizeof(float));
    detail::require(!overlap(lse, q) && !overlap(lse, k) && !overlap(lse, v) && !overlap(lse, out), "lse",
                    "shares memory with q, k, v or out");
  }
}

}  // namespace dynamicrad
