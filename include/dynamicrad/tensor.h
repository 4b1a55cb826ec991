// Tensor views shared by every backend.
//
// Q, K, V and the attention output use the diffusers layout [batch, tokens, heads, head_dim], contiguous,
// so callers never transpose. Views do not own memory; HostTensor is a small owning buffer for tools
// and tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dynamicrad {

enum class DType { f32, f16, bf16 };

std::size_t dtype_size(DType dtype);
std::string to_string(DType dtype);

// Shape of a [batch, tokens, heads, head_dim] tensor.
struct Shape {
  std::int64_t batch = 0;
  std::int64_t tokens = 0;
  std::int64_t heads = 0;
  std::int64_t head_dim = 0;

  std::int64_t elements() const { return batch * tokens * heads * head_dim; }
  bool operator==(const Shape& other) const {
    return batch == other.batch && tokens == other.tokens && heads == other.heads &&
           head_dim == other.head_dim;
  }
  bool operator!=(const Shape& other) const { return !(*this == other); }
};

std::string to_string(const Shape& shape);

// q, k, v: [batch, tokens, heads, head_dim], contiguous, read only.
struct ConstTensor {
  const void* data = nullptr;
  DType dtype = DType::f32;
  Shape shape;
};

// out: [batch, tokens, heads, head_dim], contiguous, written.
struct MutableTensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  Shape shape;

  operator ConstTensor() const { return ConstTensor{data, dtype, shape}; }
};

// An owning host buffer (zero-initialised) for tools, tests and benchmarks.
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  ConstTensor view() const { return ConstTensor{storage_.data(), dtype_, shape_}; }
  MutableTensor mutable_view() { return MutableTensor{storage_.data(), dtype_, shape_}; }

  // Element access by flat index, converting to and from float.
  float get(std::int64_t index) const;
  void set(std::int64_t index, float value);
  std::int64_t index(std::int64_t b, std::int64_t t, std::int64_t h, std::int64_t d) const {
    return ((b * shape_.tokens + t) * shape_.heads + h) * shape_.head_dim + d;
  }

 private:
  DType dtype_ = DType::f32;
  Shape shape_;
  std::vector<std::byte> storage_;
};

// Conversions used by the CPU backend (round to nearest even, NaN preserved).
float half_to_float(std::uint16_t bits);
std::uint16_t float_to_half(float value);
float bfloat16_to_float(std::uint16_t bits);
std::uint16_t float_to_bfloat16(float value);

// Reads element `index` of a typed buffer as float.
float load_as_float(const void* data, DType dtype, std::int64_t index);

}  // namespace dynamicrad
