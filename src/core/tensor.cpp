#include "dynamicrad/tensor.h"

#include <cstring>

#include "dynamicrad/error.h"

namespace dynamicrad {

std::size_t dtype_size(DType dtype) { return dtype == DType::f32 ? 4 : 2; }

std::string to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
  }
  return "?";
}

std::string to_string(const Shape& s) {
  return "[" + std::to_string(s.batch) + ", " + std::to_string(s.tokens) + ", " +
         std::to_string(s.heads) + ", " + std::to_string(s.head_dim) + "]";
}

HostTensor::HostTensor(DType dtype, Shape shape) : dtype_(dtype), shape_(shape) {
  if (shape.batch < 0 || shape.tokens < 0 || shape.heads < 0 || shape.head_dim < 0) {
    throw Error("tensor.shape", to_string(shape) + ": sizes must be >= 0");
  }
  storage_.resize(static_cast<std::size_t>(shape.elements()) * dtype_size(dtype));
}

float HostTensor::get(std::int64_t index) const { return load_as_float(storage_.data(), dtype_, index); }

void HostTensor::set(std::int64_t index, float value) {
  switch (dtype_) {
    case DType::f32:
      std::memcpy(storage_.data() + index * 4, &value, 4);
      break;
    case DType::f16: {
      const std::uint16_t bits = float_to_half(value);
      std::memcpy(storage_.data() + index * 2, &bits, 2);
      break;
    }
    case DType::bf16: {
      const std::uint16_t bits = float_to_bfloat16(value);
      std::memcpy(storage_.data() + index * 2, &bits, 2);
      break;
    }
  }
}

namespace {

float bits_to_float(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint32_t float_to_bits(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

}  // namespace

float bfloat16_to_float(std::uint16_t bits) { return bits_to_float(static_cast<std::uint32_t>(bits) << 16); }

std::uint16_t float_to_bfloat16(float value) {
  const std::uint32_t bits = float_to_bits(value);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN, sign kept
  }
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_to_float(sign);
  // Subnormal half: normalise.
  int e = -1;
  do {
    ++e;
    mantissa <<= 1;
  } while ((mantissa & 0x400u) == 0);
  return bits_to_float(sign | ((112u - static_cast<std::uint32_t>(e)) << 23) | ((mantissa & 0x3ffu) << 13));
}

std::uint16_t float_to_half(float value) {
  const std::uint32_t bits = float_to_bits(value);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // Inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (abs < 0x38800000u) {  // result is subnormal (or zero) in half
    if (abs < 0x33000000u) return sign;  // below half of the smallest subnormal
    const std::uint32_t exponent = abs >> 23;
    const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - exponent;  // 14 + (113 - exponent - 1)
    const std::uint32_t half_ulp = 1u << (shift - 1);
    std::uint32_t result = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
    if (rest > half_ulp || (rest == half_ulp && (result & 1u))) ++result;
    return static_cast<std::uint16_t>(sign | result);
  }
  // Normal: rebias the exponent and round the mantissa to 10 bits, nearest even.
  std::uint32_t rebased = abs - (112u << 23);
  const std::uint32_t rounding = 0xfffu + ((rebased >> 13) & 1u);
  rebased += rounding;
  return static_cast<std::uint16_t>(sign | (rebased >> 13));
}

float load_as_float(const void* data, DType dtype, std::int64_t index) {
  const auto* bytes = static_cast<const std::byte*>(data);
  switch (dtype) {
    case DType::f32: {
      float f;
      std::memcpy(&f, bytes + index * 4, 4);
      return f;
    }
    case DType::f16: {
      std::uint16_t h;
      std::memcpy(&h, bytes + index * 2, 2);
      return half_to_float(h);
    }
    case DType::bf16: {
      std::uint16_t h;
      std::memcpy(&h, bytes + index * 2, 2);
      return bfloat16_to_float(h);
    }
  }
  return 0.0f;
}

}  // namespace dynamicrad
