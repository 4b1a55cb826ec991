// apply_rotary() (rotary.h) against the stock arithmetic written out with every product and sum
// rounded on its own (volatile intermediates keep the compiler from fusing them), and its errors.
#include "dynamicrad/rotary.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "dynamicrad/device.h"
#include "test_support.h"

namespace dr = dynamicrad;

namespace {

struct Case {
  dr::DType dtype;
  dr::Shape shape;
};

TEST(Rotary, MatchesTheStockArithmeticBitForBit) {
  dr_test::Rng rng(5);
  for (const Case& c : {Case{dr::DType::f32, dr_test::make_shape(2, 13, 3, 8)},
                        Case{dr::DType::bf16, dr_test::make_shape(1, 37, 2, 64)},
                        Case{dr::DType::f16, dr_test::make_shape(3, 5, 1, 2)}}) {
    const dr::Shape& s = c.shape;
    const dr::HostTensor x = dr_test::convert(dr_test::random_tensor(rng, s, 3.0), c.dtype);
    std::vector<float> cos(static_cast<std::size_t>(s.tokens * s.head_dim));
    std::vector<float> sin(cos.size());
    for (float& v : cos) v = static_cast<float>(rng.normal());
    for (float& v : sin) v = static_cast<float>(rng.normal());
    dr::HostTensor out(c.dtype, s), expected(c.dtype, s);
    dr_test::fill(out, 12345.0f);
    dr::RotaryArgs a;
    a.x = x.view();
    a.out = out.mutable_view();
    a.cos = cos.data();
    a.sin = sin.data();
    a.threads = 2;
    dr::apply_rotary(a, dr::Device::cpu);
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t n = 0; n < s.tokens; ++n) {
        for (std::int64_t h = 0; h < s.heads; ++h) {
          for (std::int64_t i = 0; i < s.head_dim; i += 2) {
            const std::int64_t at = x.index(b, n, h, i);
            const float even = x.get(at), odd = x.get(at + 1);
            const float co = cos[static_cast<std::size_t>(n * s.head_dim + i)];
            const float si = sin[static_cast<std::size_t>(n * s.head_dim + i + 1)];
            volatile float ec = even * co, os = odd * si, es = even * si, oc = odd * co;
            expected.set(at, ec - os);
            expected.set(at + 1, es + oc);
          }
        }
      }
    }
    for (std::int64_t i = 0; i < s.elements(); ++i) {
      ASSERT_EQ(out.get(i), expected.get(i)) << dr::to_string(c.dtype) << " element " << i;
    }
  }
}

TEST(Rotary, ErrorsNameTheField) {
  dr::HostTensor x(dr::DType::f32, dr_test::make_shape(1, 4, 1, 6)), out(dr::DType::f32, x.shape());
  std::vector<float> table(24, 1.0f);
  dr::RotaryArgs a;
  a.x = x.view();
  a.out = out.mutable_view();
  a.cos = table.data();
  a.sin = table.data();
  const auto expect_field = [&](dr::RotaryArgs args, const char* field) {
    try {
      dr::apply_rotary(args, dr::Device::cpu);
      ADD_FAILURE() << "accepted; expected an error naming " << field;
    } catch (const dr::Error& e) {
      EXPECT_EQ(e.field(), field) << e.what();
    }
  };
  dr::RotaryArgs b = a;
  b.cos = nullptr;
  expect_field(b, "cos");
  b = a;
  b.out = dr::MutableTensor{const_cast<void*>(a.x.data), dr::DType::f32, x.shape()};
  expect_field(b, "out");
  b = a;
  b.out.shape.tokens = 3;
  expect_field(b, "out");
  b = a;
  b.out.dtype = dr::DType::bf16;
  expect_field(b, "out");
  dr::HostTensor odd(dr::DType::f32, dr_test::make_shape(1, 4, 1, 5)), odd_out(dr::DType::f32, odd.shape());
  b = a;
  b.x = odd.view();
  b.out = odd_out.mutable_view();
  expect_field(b, "x");
  if (!dr::built_with_cuda()) {
    EXPECT_THROW(dr::apply_rotary(a, dr::Device::cuda), dr::Error);
  }
}

}  // namespace
