// Typed stores into output tensors.
#pragma once

#include <cstring>

#include "dynamicrad/tensor.h"

namespace dynamicrad::detail {

inline void store_float(const MutableTensor& t, std::int64_t index, float value) {
  auto* bytes = static_cast<std::byte*>(t.data);
  switch (t.dtype) {
    case DType::f32:
      std::memcpy(bytes + index * 4, &value, 4);
      return;
    case DType::f16: {
      const std::uint16_t h = float_to_half(value);
      std::memcpy(bytes + index * 2, &h, 2);
      return;
    }
    case DType::bf16: {
      const std::uint16_t h = float_to_bfloat16(value);
      std::memcpy(bytes + index * 2, &h, 2);
      return;
    }
  }
}

}  // namespace dynamicrad::detail
