// apply_rotary(): argument checks and the CPU loop. Compiled with -ffp-contract=off (CMakeLists.txt)
// so that no product and sum fuse: the bits must equal the stock processor's.
#include "dynamicrad/rotary.h"

#include <cstdint>
#include <string>

#include "core/check.h"
#include "core/parallel.h"
#include "cpu/store.h"

namespace dynamicrad {

namespace {

using detail::require;

void check(const RotaryArgs& a) {
  require(a.x.data != nullptr, "x", "data is null");
  require(a.out.data != nullptr, "out", "data is null");
  require(a.cos != nullptr, "cos", "is null");
  require(a.sin != nullptr, "sin", "is null");
  const Shape& s = a.x.shape;
  require(s.batch >= 1 && s.tokens >= 1 && s.heads >= 1 && s.head_dim >= 2, "x",
          "shape " + to_string(s) + ": every dimension must be >= 1 and head_dim >= 2");
  require(s.head_dim % 2 == 0, "x", "head_dim " + std::to_string(s.head_dim) + " must be even (pairs)");
  require(a.out.shape == s, "out", "shape " + to_string(a.out.shape) + " differs from x's " + to_string(s));
  require(a.out.dtype == a.x.dtype, "out", "dtype " + to_string(a.out.dtype) + " differs from x's " + to_string(a.x.dtype));
  require(a.out.data != a.x.data, "out", "must not alias x");
}

}  // namespace

void apply_rotary(const RotaryArgs& a, Device device) {
  check(a);
  if (device == Device::cuda) {
    // The kernel moves pairs as one 2-element vector.
    const std::uintptr_t pair_bytes = 2 * dtype_size(a.x.dtype);
    require(reinterpret_cast<std::uintptr_t>(a.x.data) % pair_bytes == 0, "x", "data must be aligned to a pair of elements");
    require(reinterpret_cast<std::uintptr_t>(a.out.data) % pair_bytes == 0, "out", "data must be aligned to a pair of elements");
    detail::apply_rotary_cuda(a);
    return;
  }
  const Shape& s = a.x.shape;
  const std::int64_t rows = s.batch * s.tokens;
  detail::parallel_for(rows, detail::resolve_threads(a.threads), [&](std::int64_t row, int) {
    const std::int64_t n = row % s.tokens;
    const float* c_row = a.cos + n * s.head_dim;
    const float* s_row = a.sin + n * s.head_dim;
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const std::int64_t base = (row * s.heads + h) * s.head_dim;
      for (std::int64_t i = 0; i < s.head_dim; i += 2) {
        const float even = load_as_float(a.x.data, a.x.dtype, base + i);
        const float odd = load_as_float(a.x.data, a.x.dtype, base + i + 1);
        const float c = c_row[i], sn = s_row[i + 1];
        const float ec = even * c, os = odd * sn, es = even * sn, oc = odd * c;
        detail::store_float(a.out, base + i, ec - os);
        detail::store_float(a.out, base + i + 1, es + oc);
      }
    }
  });
}

}  // namespace dynamicrad
