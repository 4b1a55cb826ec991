// The C ABI (c_api.h) on the CPU engine: status codes, messages naming fields, the two-call output
// pattern, and results equal to the C++ engine's. Runs under the sanitizers with the rest of CTest.
#include "dynamicrad/c_api.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "dynamicrad/device.h"
#include "dynamicrad/engine.h"
#include "dynamicrad/rotary.h"
#include "dynamicrad/select.h"
#include "pooled_support.h"
#include "test_support.h"

namespace dr = dynamicrad;

namespace {

constexpr const char* kOptions =
    R"({"geometry": {"frames": 3, "height": 5, "width": 7, "heads": 2, "head_dim": 16, "block_size": 32},
        "prior": {"gamma": 0.5, "first_frame_sink": false}, "slots": 2, "threads": 1})";

// Static-ratio selection keeping half the near and a quarter of the far candidates.
constexpr dr_selection kStaticRatio{DR_MODE_STATIC_RATIO, 0.5, 0.25, 0.0, 0.0};

struct Engine {
  dr_engine* handle = nullptr;
  ~Engine() { dr_engine_destroy(handle); }
};

dr_tensor view(dr::HostTensor& t) {
  const dr::Shape& s = t.shape();
  return dr_tensor{t.mutable_view().data, DR_DTYPE_F32, s.batch, s.tokens, s.heads, s.head_dim};
}

TEST(CApi, EngineRunsAndMatchesTheCppEngine) {
  char error[512] = {};
  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  dr_test::Rng rng(7);
  const dr::Shape shape = dr_test::make_shape(2, 3 * 5 * 7, 2, 16);
  dr::HostTensor q = dr_test::random_tensor(rng, shape), k = dr_test::random_tensor(rng, shape);
  dr::HostTensor v = dr_test::random_tensor(rng, shape), out(dr::DType::f32, shape);
  const dr_tensor cq = view(q), ck = view(k), cv = view(v), cout = view(out);
  const dr_selection sel = kStaticRatio;
  ASSERT_EQ(dr_engine_select(e.handle, &cq, &ck, &sel, 1, nullptr, error, sizeof error), DR_OK) << error;
  std::vector<float> lse(static_cast<std::size_t>(2 * 2 * shape.tokens));
  ASSERT_EQ(dr_engine_attend(e.handle, &cq, &ck, &cv, &cout, lse.data(), 1, nullptr, error, sizeof error), DR_OK)
      << error;

  // The same through the C++ engine.
  dr::EngineOptions o;
  o.geometry.frames = 3;
  o.geometry.height = 5;
  o.geometry.width = 7;
  o.geometry.heads = 2;
  o.geometry.head_dim = 16;
  o.geometry.block_size = 32;
  o.prior.gamma = 0.5;
  o.prior.first_frame_sink = false;
  o.threads = 1;
  dr::SparseAttentionEngine cpp(o);
  dr::SelectionParams p;
  p.r_near = 0.5;
  p.r_far = 0.25;
  cpp.select(q.view(), k.view(), p, 0);
  dr::HostTensor expected(dr::DType::f32, shape);
  cpp.attend(dr::AttentionArgs{q.view(), k.view(), v.view(), expected.mutable_view()}, 0);
  for (std::int64_t i = 0; i < shape.elements(); ++i) ASSERT_EQ(out.get(i), expected.get(i)) << "element " << i;

  std::int64_t kept = 0, total = 0;
  ASSERT_EQ(dr_engine_kept(e.handle, 1, &kept, &total, error, sizeof error), DR_OK) << error;
  EXPECT_EQ(kept, cpp.kept(0).kept);
  EXPECT_EQ(total, cpp.kept(0).total);

  std::int64_t rows = 0, entries = 0;
  ASSERT_EQ(dr_engine_layout(e.handle, 1, &rows, &entries, nullptr, nullptr, error, sizeof error), DR_OK);
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(rows + 1));
  std::vector<std::int32_t> cols(static_cast<std::size_t>(entries));
  ASSERT_EQ(dr_engine_layout(e.handle, 1, &rows, &entries, offsets.data(), cols.data(), error, sizeof error), DR_OK);
  const dr::BlockLayout l = cpp.layout(0);
  EXPECT_EQ(offsets, l.row_offsets);
  EXPECT_EQ(cols, l.col_indices);

  const std::string png = ::testing::TempDir() + "dynamicrad_c_api_mask.png";
  ASSERT_EQ(dr_engine_mask_png(e.handle, 1, 1, 1, 4, png.c_str(), error, sizeof error), DR_OK) << error;
  EXPECT_TRUE(std::ifstream(png).good());
  std::remove(png.c_str());
  EXPECT_EQ(dr_engine_mask_png(e.handle, 1, 0, 2, 4, png.c_str(), error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("head", 0), 0u) << error;
  EXPECT_EQ(dr_engine_mask_png(e.handle, 1, 2, 0, 4, png.c_str(), error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("batch", 0), 0u) << error;
  // A file that cannot be written is a file error naming the path, not bad input.
  const std::string nowhere = ::testing::TempDir() + "dynamicrad_no_such_folder/mask.png";
  EXPECT_EQ(dr_engine_mask_png(e.handle, 1, 0, 0, 4, nowhere.c_str(), error, sizeof error), DR_FILE_ERROR);
  EXPECT_EQ(std::string(error).rfind(nowhere + ": cannot open for writing", 0), 0u) << error;
  std::vector<char> row(4096);
  std::size_t needed = 0;
  EXPECT_EQ(dr_lut_entry(nowhere.c_str(), "high", nullptr, nullptr, nullptr, row.data(), row.size(), &needed, error,
                         sizeof error),
            DR_FILE_ERROR);
  EXPECT_EQ(std::string(error).rfind(nowhere + ": cannot open for reading", 0), 0u) << error;

  std::int32_t type = -5, ordinal = -5;
  ASSERT_EQ(dr_engine_device(e.handle, &type, &ordinal, error, sizeof error), DR_OK);
  EXPECT_EQ(type, 0);
  EXPECT_EQ(ordinal, -1);
}

TEST(CApi, ErrorsNameTheFieldAndCodeTheKind) {
  char error[512] = {};
  dr_engine* handle = reinterpret_cast<dr_engine*>(0x1);
  EXPECT_EQ(dr_engine_create("{ not json", &handle, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_EQ(handle, nullptr);
  EXPECT_NE(std::string(error).find("options"), std::string::npos) << error;
  EXPECT_EQ(dr_engine_create(R"({"geometry": {"frames": 2}})", &handle, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(error).find("options.geometry.height"), std::string::npos) << error;
  EXPECT_EQ(dr_engine_create(R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8},
                                 "colour": 1})",
                             &handle, error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(error).find("options.colour"), std::string::npos) << error;
  EXPECT_EQ(dr_engine_create(R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8,
                                 "block_size": 48}})",
                             &handle, error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(error).find("block_size"), std::string::npos) << error;
  EXPECT_EQ(dr_engine_create(R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8},
                                 "device": "tpu"})",
                             &handle, error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(error).find("options.device"), std::string::npos) << error;
  // Integers past their C type's range are errors, not wrapped values (2^32 + 2 slots is not 2).
  for (const char* options : {R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8},
                                  "slots": 4294967298})",
                              R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8},
                                  "threads": -4294967296})",
                              R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8,
                                  "block_size": 4294967328}})",
                              R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8},
                                  "slots": 18446744073709551615})"}) {
    SCOPED_TRACE(options);
    handle = reinterpret_cast<dr_engine*>(0x1);
    EXPECT_EQ(dr_engine_create(options, &handle, error, sizeof error), DR_INVALID_ARGUMENT);
    EXPECT_EQ(handle, nullptr);
    EXPECT_NE(std::string(error).find("outside the integer range"), std::string::npos) << error;
  }
  // A value of the wrong JSON kind, or a tile that is not three integers: an invalid argument that
  // names the field (not the JSON library's runtime error, nor the first three entries taken).
  const std::vector<std::pair<const char*, const char*>> bad_kinds = {
      {R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8},
           "prior": {"gamma": "2"}})",
       "options.prior.gamma"},
      {R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8}, "scale": true})",
       "options.scale"},
      {R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8, "block_size": 32,
                        "token_order": "tiled3d", "tile": [2, 4, 4, 1]}})",
       "options.geometry.tile"},
      {R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8, "block_size": 32,
                        "token_order": "tiled3d", "tile": [4, 8]}})",
       "options.geometry.tile"},
  };
  for (const auto& [options, field] : bad_kinds) {
    SCOPED_TRACE(options);
    handle = reinterpret_cast<dr_engine*>(0x1);
    EXPECT_EQ(dr_engine_create(options, &handle, error, sizeof error), DR_INVALID_ARGUMENT);
    EXPECT_EQ(handle, nullptr);
    EXPECT_EQ(std::string(error).rfind(field, 0), 0u) << error;
  }

  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  dr_test::Rng rng(3);
  dr::HostTensor q = dr_test::random_tensor(rng, dr_test::make_shape(1, 104, 2, 16));  // one token short
  const dr_tensor cq = view(q);
  const dr_selection sel = kStaticRatio;
  EXPECT_EQ(dr_engine_select(e.handle, &cq, &cq, &sel, 0, nullptr, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("q:", 0), 0u) << error;
  const dr_selection bad{7, 0.5, 0.25, 0.0, 0.0};
  EXPECT_EQ(dr_engine_select(e.handle, &cq, &cq, &bad, 0, nullptr, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(error).find("selection.mode"), std::string::npos) << error;
  std::int64_t kept = 0, total = 0;
  EXPECT_EQ(dr_engine_kept(e.handle, 5, &kept, &total, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("slot", 0), 0u) << error;
  EXPECT_EQ(dr_engine_kept(nullptr, 0, &kept, &total, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(error).find("engine"), std::string::npos) << error;

  // A one-byte error buffer still gets a terminated (empty) message; a null one is allowed.
  char tiny[1] = {'x'};
  EXPECT_EQ(dr_engine_kept(e.handle, 5, &kept, &total, tiny, sizeof tiny), DR_INVALID_ARGUMENT);
  EXPECT_EQ(tiny[0], '\0');
  EXPECT_EQ(dr_engine_kept(e.handle, 5, &kept, &total, nullptr, 0), DR_INVALID_ARGUMENT);
}

TEST(CApi, NormRotaryOptionsAreCheckedAndNullIsWansRotation) {
  dr_test::Rng rng(4);
  dr::HostTensor x = dr_test::random_tensor(rng, dr_test::make_shape(1, 5, 2, 4));
  dr::HostTensor out(dr::DType::f32, x.shape()), expected(dr::DType::f32, x.shape());
  const dr_tensor cx = view(x), cout = view(out);
  std::vector<float> cos(20), sin(20), weight(4, 1.0f);
  for (std::size_t i = 0; i < cos.size(); ++i) {
    cos[i] = static_cast<float>(rng.normal());
    sin[i] = static_cast<float>(rng.normal());
  }
  char error[512] = {};
  // NULL options: Wan's rotation of every token, as apply_rotary() with default RotaryArgs
  ASSERT_EQ(dr_norm_rotary(&cx, &cout, nullptr, cos.data(), sin.data(), 0, nullptr, error, sizeof error), DR_OK) << error;
  dr::RotaryArgs a;
  a.x = x.view();
  a.out = expected.mutable_view();
  a.cos = cos.data();
  a.sin = sin.data();
  dr::apply_rotary(a, dr::Device::cpu);
  for (std::int64_t i = 0; i < x.shape().elements(); ++i) ASSERT_EQ(out.get(i), expected.get(i)) << i;

  dr_norm_rotary_options o{};
  o.norm_weight = weight.data();
  o.norm_eps = 1e-6;
  o.norm_scope = 1;
  o.rotated_tokens = -1;
  EXPECT_EQ(dr_norm_rotary(&cx, &cout, &o, cos.data(), sin.data(), 0, nullptr, error, sizeof error), DR_OK) << error;
  const auto expect_field = [&](const dr_norm_rotary_options& bad, const char* field) {
    EXPECT_EQ(dr_norm_rotary(&cx, &cout, &bad, cos.data(), sin.data(), 0, nullptr, error, sizeof error),
              DR_INVALID_ARGUMENT);
    EXPECT_EQ(std::string(error).rfind(field, 0), 0u) << error;
  };
  dr_norm_rotary_options bad = o;
  bad.norm_scope = 2;
  expect_field(bad, "norm_scope");
  bad = o;
  bad.norm_weighting = -1;
  expect_field(bad, "norm_weighting");
  bad = o;
  bad.pairs = 3;
  expect_field(bad, "pairs");
  bad = o;
  bad.rotated_tokens = 6;
  expect_field(bad, "rotated_tokens");
}

TEST(CApi, TextOutputsUseTheTwoCallPattern) {
  char error[512] = {};
  size_t needed = 0;
  char small[8];
  EXPECT_EQ(dr_preset_geometry("wan2.1-14b-720p", small, sizeof small, &needed, error, sizeof error),
            DR_BUFFER_TOO_SMALL);
  ASSERT_GT(needed, sizeof small);
  std::string json(needed, '\0');
  ASSERT_EQ(dr_preset_geometry("wan2.1-14b-720p", json.data(), json.size(), &needed, error, sizeof error), DR_OK);
  EXPECT_NE(json.find("\"frames\":21"), std::string::npos) << json;
  // One byte short of `needed` (no room for the terminating NUL): too small, and nothing is written.
  std::vector<char> one_short(needed, 'x');
  EXPECT_EQ(dr_preset_geometry("wan2.1-14b-720p", one_short.data(), needed - 1, &needed, error, sizeof error),
            DR_BUFFER_TOO_SMALL);
  EXPECT_EQ(needed, json.size());
  EXPECT_TRUE(std::all_of(one_short.begin(), one_short.end(), [](char c) { return c == 'x'; }));
  EXPECT_EQ(dr_preset_geometry("wan9", json.data(), json.size(), &needed, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(error).find("wan2.1-14b-720p"), std::string::npos) << error;

  std::vector<char> row(8192);
  ASSERT_EQ(dr_lut_entry(nullptr, "high", nullptr, nullptr, nullptr, row.data(), row.size(), &needed, error, sizeof error),
            DR_OK)
      << error;
  EXPECT_NE(std::string(row.data()).find("dynamic-threshold"), std::string::npos);
  EXPECT_NE(std::string(row.data()).find("\"calibrated_for\": \"wan2.1-14b-720p\""), std::string::npos);
  const char* tiny_geometry = R"({"frames": 2, "height": 4, "width": 8, "heads": 1, "head_dim": 8, "block_size": 32})";
  EXPECT_EQ(dr_lut_entry(nullptr, "high", "dynamic-threshold", tiny_geometry, "hunyuan-720p", row.data(), row.size(),
                         &needed, error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("lut_geometry", 0), 0u) << error;
  EXPECT_EQ(dr_lut_entry(nullptr, "extreme", nullptr, nullptr, nullptr, row.data(), row.size(), &needed, error,
                         sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("regime", 0), 0u) << error;

  const char* geometry = R"({"frames": 2, "height": 4, "width": 8, "heads": 1, "head_dim": 8, "block_size": 32,
                             "token_order": "tiled3d"})";
  std::vector<std::int64_t> perm(64);
  ASSERT_EQ(dr_token_permutation(geometry, perm.data(), 64, error, sizeof error), DR_OK) << error;
  EXPECT_EQ(dr_token_permutation(geometry, perm.data(), 63, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("perm", 0), 0u) << error;
  // n must equal the tokens: a larger array is refused too, and left alone.
  std::vector<std::int64_t> longer(65, -1);
  EXPECT_EQ(dr_token_permutation(geometry, longer.data(), 65, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("perm", 0), 0u) << error;
  EXPECT_TRUE(std::all_of(longer.begin(), longer.end(), [](std::int64_t x) { return x == -1; }));
}

TEST(CApi, DestroyIsSafeOnNullAndTheBuildIsDescribed) {
  dr_engine_destroy(nullptr);
  EXPECT_EQ(dr_built_with_cuda(), dr::built_with_cuda() ? 1 : 0);
  EXPECT_FALSE(std::string(dr_version()).empty());
}

// The pooled prefix through the C ABI: dr_norm_rotary's pooled output and dr_engine_select_pooled.

// A tensor of any dtype (view() above is f32 only).
dr_tensor typed_view(dr::HostTensor& t) {
  const dr::Shape& s = t.shape();
  const std::int32_t dtype = t.dtype() == dr::DType::f32 ? DR_DTYPE_F32 : t.dtype() == dr::DType::f16 ? DR_DTYPE_F16
                                                                                                      : DR_DTYPE_BF16;
  return dr_tensor{t.mutable_view().data, dtype, s.batch, s.tokens, s.heads, s.head_dim};
}

std::uint32_t float_bits(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}

struct CsrLayout {
  std::vector<std::int64_t> offsets;
  std::vector<std::int32_t> cols;
};

// dr_engine_layout() of a slot (the two-call pattern); empty on failure (reported).
CsrLayout layout_of(const dr_engine* engine, std::int32_t slot) {
  char error[512] = {};
  std::int64_t rows = 0, entries = 0;
  CsrLayout l;
  if (dr_engine_layout(engine, slot, &rows, &entries, nullptr, nullptr, error, sizeof error) != DR_OK) {
    ADD_FAILURE() << error;
    return l;
  }
  l.offsets.resize(static_cast<std::size_t>(rows + 1));
  l.cols.resize(static_cast<std::size_t>(entries));
  if (dr_engine_layout(engine, slot, &rows, &entries, l.offsets.data(), l.cols.data(), error, sizeof error) != DR_OK)
    ADD_FAILURE() << error;
  return l;
}

void expect_same_layout(const CsrLayout& got, const CsrLayout& want) {
  EXPECT_EQ(got.offsets, want.offsets);
  EXPECT_EQ(got.cols, want.cols);
}

// kOptions' geometry for a call of `batch`: 105 tokens, 4 blocks of 32 (the last of 9 tokens).
dr::VideoGeometry options_geometry(std::int64_t batch) {
  dr::VideoGeometry g;
  g.frames = 3;
  g.height = 5;
  g.width = 7;
  g.heads = 2;
  g.head_dim = 16;
  g.block_size = 32;
  g.batch = batch;
  return g;
}

TEST(CApi, NormRotaryWritesThePooledMeans) {
  dr_test::Rng rng(31);
  const float poison = std::numeric_limits<float>::quiet_NaN();
  for (const dr::DType dtype : {dr::DType::f32, dr::DType::bf16}) {
    const dr::Shape shape = dr_test::make_shape(2, 37, 3, 8);
    dr::HostTensor x = dr_test::random_tensor(rng, shape, 2.0, dtype);
    dr::HostTensor out(dtype, shape), plain(dtype, shape);
    const dr_tensor cx = typed_view(x), cout = typed_view(out), cplain = typed_view(plain);
    std::vector<float> cos(static_cast<std::size_t>(37 * 8)), sin(cos.size()), weight(3 * 8);
    for (float& v : cos) v = static_cast<float>(rng.normal());
    for (float& v : sin) v = static_cast<float>(rng.normal());
    for (float& v : weight) v = static_cast<float>(1.0 + 0.3 * rng.normal());
    char error[512] = {};
    dr_norm_rotary_options o{};
    o.norm_weight = weight.data();
    o.norm_eps = 1e-6;
    o.rotated_tokens = 30;
    ASSERT_EQ(dr_norm_rotary(&cx, &cplain, &o, cos.data(), sin.data(), 0, nullptr, error, sizeof error), DR_OK) << error;
    // 37 tokens in blocks of 8: all 5 blocks (the last of 5 tokens), then only the first 3.
    for (const std::int64_t blocks : {std::int64_t{5}, std::int64_t{3}}) {
      SCOPED_TRACE(dr::to_string(dtype) + " pooled_blocks " + std::to_string(blocks));
      const std::size_t tail = 11;
      std::vector<float> pooled(static_cast<std::size_t>(2 * 3 * blocks * 8) + tail, poison);
      dr_norm_rotary_options p = o;
      p.pooled = pooled.data();
      p.pool_block = 8;
      p.pooled_blocks = blocks;
      ASSERT_EQ(dr_norm_rotary(&cx, &cout, &p, cos.data(), sin.data(), 0, nullptr, error, sizeof error), DR_OK) << error;
      ASSERT_EQ(std::memcmp(out.view().data, plain.view().data,
                            static_cast<std::size_t>(shape.elements()) * dr::dtype_size(dtype)),
                0)
          << "out with pooling differs from out without";
      const std::vector<float> want = dr_test::sequential_means(out, 8, blocks);
      for (std::size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(float_bits(pooled[i]), float_bits(want[i])) << "pooled[" << i << "] = " << pooled[i] << ", expected " << want[i];
      for (std::size_t i = want.size(); i < pooled.size(); ++i)
        ASSERT_TRUE(std::isnan(pooled[i])) << "pooled written past its blocks, at " << i;
    }

    // Bad pooling options: DR_INVALID_ARGUMENT with a message naming the field.
    std::vector<float> pooled(static_cast<std::size_t>(2 * 3 * 37 * 8));
    const auto expect_named = [&](const dr_norm_rotary_options& bad, const char* field) {
      error[0] = '\0';
      EXPECT_EQ(dr_norm_rotary(&cx, &cout, &bad, cos.data(), sin.data(), 0, nullptr, error, sizeof error),
                DR_INVALID_ARGUMENT);
      EXPECT_TRUE(dr_test::names_word(error, field)) << "message \"" << error << "\" should name " << field;
    };
    dr_norm_rotary_options bad = o;
    bad.pooled = pooled.data();
    bad.pool_block = 0;
    bad.pooled_blocks = 1;
    expect_named(bad, "pool_block");
    bad.pool_block = -4;
    expect_named(bad, "pool_block");
    bad.pool_block = 8;
    bad.pooled_blocks = 0;
    expect_named(bad, "pooled_blocks");
    bad.pooled_blocks = 6;
    expect_named(bad, "pooled_blocks");
  }
}

TEST(CApi, SelectPooledGivesSelectsLayout) {
  char error[512] = {};
  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  dr_test::Rng rng(32);
  const dr::Shape shape = dr_test::make_shape(2, 105, 2, 16);
  dr::HostTensor q = dr_test::random_tensor(rng, shape), k = dr_test::random_tensor(rng, shape, 2.0);
  const dr_tensor cq = view(q), ck = view(k);
  const dr::PooledBlocks pooled = dr::pool_blocks(q.view(), k.view(), options_geometry(2));
  ASSERT_EQ(pooled.blocks, 4);
  const dr_selection selections[] = {kStaticRatio,
                                     {DR_MODE_DYNAMIC_THRESHOLD, 0.0, 0.0, 0.02, 0.04}};
  for (const dr_selection& sel : selections) {
    SCOPED_TRACE(sel.mode == DR_MODE_STATIC_RATIO ? "static-ratio" : "dynamic-threshold");
    ASSERT_EQ(dr_engine_select(e.handle, &cq, &ck, &sel, 0, nullptr, error, sizeof error), DR_OK) << error;
    const CsrLayout want = layout_of(e.handle, 0);
    std::int64_t want_kept = 0, total = 0;
    ASSERT_EQ(dr_engine_kept(e.handle, 0, &want_kept, &total, error, sizeof error), DR_OK) << error;
    for (const std::int64_t blocks : {std::int64_t{0}, std::int64_t{2}, std::int64_t{3}, std::int64_t{4}}) {
      SCOPED_TRACE("pooled_blocks " + std::to_string(blocks));
      const dr_test::PrefixArrays prefix = dr_test::prefix_of(pooled, blocks, 32);
      const float* pq_ptr = blocks > 0 ? prefix.q.data() : nullptr;
      const float* pk_ptr = blocks > 0 ? prefix.k.data() : nullptr;
      ASSERT_EQ(dr_engine_select_pooled(e.handle, &cq, &ck, pq_ptr, pk_ptr, blocks, 32, &sel, 1, nullptr, error,
                                        sizeof error),
                DR_OK)
          << error;
      expect_same_layout(layout_of(e.handle, 1), want);
      std::int64_t kept = 0;
      ASSERT_EQ(dr_engine_kept(e.handle, 1, &kept, &total, error, sizeof error), DR_OK) << error;
      EXPECT_EQ(kept, want_kept);
    }
  }

  // Bad prefixes: DR_INVALID_ARGUMENT with a message naming the field.
  const dr_test::PrefixArrays prefix = dr_test::prefix_of(pooled, 4, 32);
  const float* pq = prefix.q.data();
  const float* pk = prefix.k.data();
  const dr_selection& sel = selections[0];
  for (const std::int64_t blocks : {std::int64_t{-1}, std::int64_t{5}}) {
    error[0] = '\0';
    EXPECT_EQ(dr_engine_select_pooled(e.handle, &cq, &ck, pq, pk, blocks, 32, &sel, 0, nullptr, error,
                                      sizeof error),
              DR_INVALID_ARGUMENT)
        << "pooled_blocks " << blocks;
    EXPECT_TRUE(dr_test::names_word(error, "pooled_blocks")) << error;
  }
  error[0] = '\0';
  EXPECT_EQ(dr_engine_select_pooled(e.handle, &cq, &ck, nullptr, pk, 2, 32, &sel, 0, nullptr, error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_TRUE(dr_test::names_word(error, "pooled_q")) << error;
  error[0] = '\0';
  EXPECT_EQ(dr_engine_select_pooled(e.handle, &cq, &ck, pq, nullptr, 2, 32, &sel, 0, nullptr, error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_TRUE(dr_test::names_word(error, "pooled_k")) << error;
  error[0] = '\0';
  EXPECT_EQ(dr_engine_select_pooled(e.handle, &cq, &ck, pq, pk, 2, 64, &sel, 0, nullptr, error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_TRUE(dr_test::names_word(error, "pool_block")) << error;
}

// The intended pipeline: dr_norm_rotary pools Q and K with the geometry's blocks as it writes them,
// and dr_engine_select_pooled adopts those means; the layout is dr_engine_select's on the same Q, K.
TEST(CApi, NormRotaryPooledMeansFeedSelectPooled) {
  char error[512] = {};
  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  dr_test::Rng rng(33);
  const dr::Shape shape = dr_test::make_shape(2, 105, 2, 16);
  dr::HostTensor q = dr_test::random_tensor(rng, shape), k = dr_test::random_tensor(rng, shape, 2.0);
  dr::HostTensor qr(dr::DType::f32, shape), kr(dr::DType::f32, shape);
  const dr_tensor cq = view(q), ck = view(k), cqr = view(qr), ckr = view(kr);
  std::vector<float> cos(static_cast<std::size_t>(105 * 16)), sin(cos.size()), weight(2 * 16);
  for (float& v : cos) v = static_cast<float>(rng.normal());
  for (float& v : sin) v = static_cast<float>(rng.normal());
  for (float& v : weight) v = static_cast<float>(1.0 + 0.3 * rng.normal());
  const dr_selection sel{DR_MODE_DYNAMIC_THRESHOLD, 0.0, 0.0, 0.02, 0.04};
  for (const std::int64_t blocks : {std::int64_t{4}, std::int64_t{3}}) {
    SCOPED_TRACE("pooled_blocks " + std::to_string(blocks));
    std::vector<float> pq(static_cast<std::size_t>(2 * 2 * blocks * 16)), pk(pq.size());
    dr_norm_rotary_options o{};
    o.norm_weight = weight.data();
    o.norm_eps = 1e-6;
    o.rotated_tokens = -1;
    o.pool_block = 32;
    o.pooled_blocks = blocks;
    o.pooled = pq.data();
    ASSERT_EQ(dr_norm_rotary(&cq, &cqr, &o, cos.data(), sin.data(), 0, nullptr, error, sizeof error), DR_OK) << error;
    o.pooled = pk.data();
    ASSERT_EQ(dr_norm_rotary(&ck, &ckr, &o, cos.data(), sin.data(), 0, nullptr, error, sizeof error), DR_OK) << error;
    ASSERT_EQ(dr_engine_select(e.handle, &cqr, &ckr, &sel, 0, nullptr, error, sizeof error), DR_OK) << error;
    const CsrLayout want = layout_of(e.handle, 0);
    ASSERT_EQ(dr_engine_select_pooled(e.handle, &cqr, &ckr, pq.data(), pk.data(), blocks, 32, &sel, 1, nullptr, error,
                                      sizeof error),
              DR_OK)
        << error;
    expect_same_layout(layout_of(e.handle, 1), want);
    // The rotary's means are pool_blocks()' of its outputs.
    const dr::PooledBlocks pooled = dr::pool_blocks(qr.view(), kr.view(), options_geometry(2));
    const dr_test::PrefixArrays means = dr_test::prefix_of(pooled, blocks, 32);
    EXPECT_EQ(std::memcmp(pq.data(), means.q.data(), pq.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(pk.data(), means.k.data(), pk.size() * sizeof(float)), 0);
  }
}

// dr_engine_attend_dense: dense attention on the engine's kernels through the C ABI, bit for bit the
// C++ engine's attend_dense(), within the oracle's tolerance of dense attention, no select needed.
TEST(CApi, AttendDenseMatchesTheCppEngineAndTheOracle) {
  char error[512] = {};
  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  dr::EngineOptions o;
  o.geometry = options_geometry(1);
  o.prior.gamma = 0.5;
  o.prior.first_frame_sink = false;
  o.threads = 1;
  dr::SparseAttentionEngine cpp(o);
  dr_test::Rng rng(41);
  const float poison = std::numeric_limits<float>::quiet_NaN();
  for (const std::int64_t batch : {std::int64_t{1}, std::int64_t{2}}) {
    for (const dr::DType dtype : {dr::DType::f32, dr::DType::bf16}) {
      SCOPED_TRACE("batch " + std::to_string(batch) + " " + dr::to_string(dtype));
      const dr::Shape shape = dr_test::make_shape(batch, 105, 2, 16);  // 4 blocks of 32, the last of 9
      dr::HostTensor q = dr_test::random_tensor(rng, shape, 1.0, dtype), k = dr_test::random_tensor(rng, shape, 2.0, dtype);
      dr::HostTensor v = dr_test::random_tensor(rng, shape, 1.0, dtype), out(dtype, shape);
      dr_test::fill(out, poison);
      const dr_tensor cq = typed_view(q), ck = typed_view(k), cv = typed_view(v), cout = typed_view(out);
      std::vector<float> lse(static_cast<std::size_t>(batch * 2 * 105), poison);
      ASSERT_EQ(dr_engine_attend_dense(e.handle, &cq, &ck, &cv, &cout, lse.data(), nullptr, error, sizeof error), DR_OK)
          << error;

      // the C++ engine's attend_dense(): the same bits
      dr::HostTensor expected(dtype, shape);
      std::vector<float> expected_lse(lse.size());
      dr::AttentionArgs args{q.view(), k.view(), v.view(), expected.mutable_view()};
      args.lse = expected_lse.data();
      cpp.attend_dense(args);
      ASSERT_EQ(std::memcmp(out.view().data, expected.view().data,
                            static_cast<std::size_t>(shape.elements()) * dr::dtype_size(dtype)),
                0);
      ASSERT_EQ(std::memcmp(lse.data(), expected_lse.data(), lse.size() * sizeof(float)), 0);

      // the oracle: dense attention in double
      const dr_test::NaiveResult want = dr_test::naive_attention(q, k, v, 0.25, nullptr);
      const double tol = dtype == dr::DType::f32 ? 1e-4 : 0x1.0p-6;
      double max_abs = 0.0, lse_abs = 0.0, prior_abs = 0.0;
      for (std::int64_t i = 0; i < shape.elements(); ++i)
        max_abs = std::max(max_abs, std::fabs(out.get(i) - want.out[static_cast<std::size_t>(i)]));
      for (std::size_t i = 0; i < lse.size(); ++i)
        lse_abs = std::max(lse_abs, std::fabs(static_cast<double>(lse[i]) - want.lse[i]));
      EXPECT_LE(max_abs, tol);
      EXPECT_LE(lse_abs, 1e-4);
      // the comparison can fail: the engine's prior as a block mask gives another result
      const dr::BlockLayout prior = dr::layout_from_prior(cpp.prior(), batch, 2);
      ASSERT_LT(prior.kept(), batch * 2 * 4 * 4) << "the prior should be sparse";
      const dr_test::NaiveResult masked = dr_test::naive_attention(q, k, v, 0.25, &prior);
      for (std::int64_t i = 0; i < shape.elements(); ++i)
        prior_abs = std::max(prior_abs, std::fabs(out.get(i) - masked.out[static_cast<std::size_t>(i)]));
      EXPECT_GT(prior_abs, 10 * tol);

      // NULL lse is allowed and gives the same output
      dr::HostTensor again(dtype, shape);
      const dr_tensor cagain = typed_view(again);
      ASSERT_EQ(dr_engine_attend_dense(e.handle, &cq, &ck, &cv, &cagain, nullptr, nullptr, error, sizeof error), DR_OK)
          << error;
      ASSERT_EQ(std::memcmp(out.view().data, again.view().data,
                            static_cast<std::size_t>(shape.elements()) * dr::dtype_size(dtype)),
                0);
    }
  }
  // No slot was selected by the dense calls.
  std::int64_t kept = 0, total = 0;
  EXPECT_EQ(dr_engine_kept(e.handle, 0, &kept, &total, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("slot", 0), 0u) << error;
}

TEST(CApi, AttendDenseErrorsNameTheField) {
  char error[512] = {};
  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  dr_test::Rng rng(42);
  const dr::Shape shape = dr_test::make_shape(1, 105, 2, 16);
  dr::HostTensor q = dr_test::random_tensor(rng, shape), k = dr_test::random_tensor(rng, shape);
  dr::HostTensor v = dr_test::random_tensor(rng, shape), out(dr::DType::f32, shape);
  dr::HostTensor short_t = dr_test::random_tensor(rng, dr_test::make_shape(1, 104, 2, 16));
  dr::HostTensor heads_t = dr_test::random_tensor(rng, dr_test::make_shape(1, 105, 3, 16));
  dr::HostTensor batch_t = dr_test::random_tensor(rng, dr_test::make_shape(2, 105, 2, 16));
  dr::HostTensor bf16_t = dr_test::random_tensor(rng, shape, 1.0, dr::DType::bf16);
  const float poison = std::numeric_limits<float>::quiet_NaN();
  dr_test::fill(out, poison);
  const dr_tensor cq = view(q), ck = view(k), cv = view(v), cout = view(out);
  const dr_tensor c_short = view(short_t), c_heads = view(heads_t), c_batch = view(batch_t), c_bf16 = typed_view(bf16_t);
  dr_tensor c_null = cq;
  c_null.data = nullptr;
  dr_tensor c_bad_dtype = cq;
  c_bad_dtype.dtype = 99;
  const auto expect_field = [&](const dr_tensor* tq, const dr_tensor* tk, const dr_tensor* tv, const dr_tensor* to,
                                const char* field) {
    error[0] = '\0';
    EXPECT_EQ(dr_engine_attend_dense(e.handle, tq, tk, tv, to, nullptr, nullptr, error, sizeof error),
              DR_INVALID_ARGUMENT)
        << field;
    EXPECT_EQ(std::string(error).rfind(std::string(field) + ":", 0), 0u) << error;
  };
  expect_field(&c_short, &ck, &cv, &cout, "q");
  expect_field(&c_heads, &ck, &cv, &cout, "q");
  expect_field(nullptr, &ck, &cv, &cout, "q");
  expect_field(&c_null, &ck, &cv, &cout, "q");
  expect_field(&c_bad_dtype, &ck, &cv, &cout, "q");
  expect_field(&cq, &c_short, &cv, &cout, "k");
  expect_field(&cq, &c_batch, &cv, &cout, "k");
  expect_field(&cq, &c_bf16, &cv, &cout, "k");
  expect_field(&cq, nullptr, &cv, &cout, "k");
  expect_field(&cq, &ck, &c_heads, &cout, "v");
  expect_field(&cq, &ck, nullptr, &cout, "v");
  expect_field(&cq, &ck, &cv, &c_short, "out");
  expect_field(&cq, &ck, &cv, &c_heads, "out");
  expect_field(&cq, &ck, &cv, nullptr, "out");
  expect_field(&cq, &ck, &cv, &c_null, "out");
  for (std::int64_t i = 0; i < shape.elements(); ++i) ASSERT_TRUE(std::isnan(out.get(i))) << "written by a failed call";
  // a null engine
  EXPECT_EQ(dr_engine_attend_dense(nullptr, &cq, &ck, &cv, &cout, nullptr, nullptr, error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(error).find("engine"), std::string::npos) << error;
  // and a good call still works
  EXPECT_EQ(dr_engine_attend_dense(e.handle, &cq, &ck, &cv, &cout, nullptr, nullptr, error, sizeof error), DR_OK)
      << error;
  for (std::int64_t i = 0; i < shape.elements(); ++i) ASSERT_TRUE(std::isfinite(out.get(i))) << i;
}

}  // namespace

// Memory the call reads and writes: out (and lse) over k or v is refused, since rows still read them
// while others are written; out over q itself gives the bits of a separate out.
TEST(CApi, OutputsThatShareMemoryWithInputs) {
  char error[512] = {};
  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  dr_test::Rng rng(41);
  const dr::Shape shape = dr_test::make_shape(1, 105, 2, 16);
  dr::HostTensor q = dr_test::random_tensor(rng, shape), k = dr_test::random_tensor(rng, shape),
                 v = dr_test::random_tensor(rng, shape), out(dr::DType::f32, shape);
  const dr_tensor cq = view(q), ck = view(k), cv = view(v), cout = view(out);
  const dr_selection sel = kStaticRatio;
  ASSERT_EQ(dr_engine_select(e.handle, &cq, &ck, &sel, 0, nullptr, error, sizeof error), DR_OK) << error;
  std::vector<float> lse(2 * 105);
  ASSERT_EQ(dr_engine_attend(e.handle, &cq, &ck, &cv, &cout, lse.data(), 0, nullptr, error, sizeof error), DR_OK)
      << error;
  for (const dr_tensor* input : {&ck, &cv}) {
    error[0] = '\0';
    EXPECT_EQ(dr_engine_attend(e.handle, &cq, &ck, &cv, input, nullptr, 0, nullptr, error, sizeof error),
              DR_INVALID_ARGUMENT);
    EXPECT_TRUE(dr_test::names_word(error, "out")) << error;
    EXPECT_EQ(dr_engine_attend_dense(e.handle, &cq, &ck, &cv, input, nullptr, nullptr, error, sizeof error),
              DR_INVALID_ARGUMENT);
  }
  // lse inside v, and out starting half-way into q
  error[0] = '\0';
  EXPECT_EQ(dr_engine_attend(e.handle, &cq, &ck, &cv, &cout, static_cast<float*>(v.mutable_view().data), 0, nullptr,
                             error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_TRUE(dr_test::names_word(error, "lse")) << error;
  std::vector<float> wide(static_cast<std::size_t>(2 * shape.elements()));
  dr_tensor front{wide.data(), DR_DTYPE_F32, 1, 105, 2, 16}, back = front;
  back.data = wide.data() + shape.elements() / 2;
  error[0] = '\0';
  EXPECT_EQ(dr_engine_attend(e.handle, &front, &ck, &cv, &back, nullptr, 0, nullptr, error, sizeof error),
            DR_INVALID_ARGUMENT);
  EXPECT_TRUE(dr_test::names_word(error, "out")) << error;
  // in place over q
  dr::HostTensor in_place = q;
  const dr_tensor cin = view(in_place);
  ASSERT_EQ(dr_engine_attend(e.handle, &cin, &ck, &cv, &cin, nullptr, 0, nullptr, error, sizeof error), DR_OK) << error;
  EXPECT_EQ(std::memcmp(in_place.view().data, out.view().data, static_cast<std::size_t>(shape.elements()) * sizeof(float)),
            0);
}

// Sizes that would overflow the library's 64-bit arithmetic are errors naming the field, not
// wrap-around (a batch of 2^60 crashed in pooling; heads of 2^58 + 1 made select loop for ever).
TEST(CApi, SizesBeyondTheLibrarysArithmeticAreRefused) {
  char error[512] = {};
  dr_engine* handle = nullptr;
  const std::pair<const char*, const char*> cases[] = {
      {R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 288230376151711745, "head_dim": 8}})",
       "geometry.heads"},
      {R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 4097, "head_dim": 8}})", "geometry.heads"},
      {R"({"geometry": {"frames": 2, "height": 4, "width": 8, "heads": 1, "head_dim": 8, "block_size": 128,
                        "token_order": "tiled3d", "tile": [128, 33554433, 1]}})",
       "geometry.tile"},
      {R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8}, "threads": 5000})",
       "options.threads"},
      // not a size, but also accepted and ignored before
      {R"({"geometry": {"frames": 2, "height": 4, "width": 4, "heads": 1, "head_dim": 8}, "cuda_device": 7})",
       "options.cuda_device"},
  };
  for (const auto& [options, field] : cases) {
    SCOPED_TRACE(options);
    error[0] = '\0';
    EXPECT_EQ(dr_engine_create(options, &handle, error, sizeof error), DR_INVALID_ARGUMENT);
    EXPECT_EQ(handle, nullptr);
    EXPECT_EQ(std::string(error).rfind(field, 0), 0u) << error;
  }
  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  std::vector<float> data(16);
  const dr_tensor huge{data.data(), DR_DTYPE_F32, int64_t{1} << 60, 105, 2, 16};
  const dr_selection sel = kStaticRatio;
  error[0] = '\0';
  EXPECT_EQ(dr_engine_select(e.handle, &huge, &huge, &sel, 0, nullptr, error, sizeof error), DR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(error).rfind("q.batch", 0), 0u) << error;
}

// dr_engine_layout's second call writes only into arrays of the capacities it is given.
TEST(CApi, LayoutCopiesOnlyWhatTheArraysHold) {
  char error[512] = {};
  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  dr_test::Rng rng(42);
  dr::HostTensor q1 = dr_test::random_tensor(rng, dr_test::make_shape(1, 105, 2, 16));
  dr::HostTensor q2 = dr_test::random_tensor(rng, dr_test::make_shape(2, 105, 2, 16));
  const dr_tensor c1 = view(q1), c2 = view(q2);
  const dr_selection sel = kStaticRatio;
  ASSERT_EQ(dr_engine_select(e.handle, &c1, &c1, &sel, 0, nullptr, error, sizeof error), DR_OK) << error;
  std::int64_t rows = 0, entries = 0;
  ASSERT_EQ(dr_engine_layout(e.handle, 0, &rows, &entries, nullptr, nullptr, error, sizeof error), DR_OK) << error;
  const std::int64_t rows1 = rows, entries1 = entries;
  // the layout grows (batch 2) between the two calls: nothing is written, the new sizes come back
  ASSERT_EQ(dr_engine_select(e.handle, &c2, &c2, &sel, 0, nullptr, error, sizeof error), DR_OK) << error;
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(rows1 + 1) + 4, -7);
  std::vector<std::int32_t> cols(static_cast<std::size_t>(entries1) + 4, -7);
  EXPECT_EQ(dr_engine_layout(e.handle, 0, &rows, &entries, offsets.data(), cols.data(), error, sizeof error),
            DR_BUFFER_TOO_SMALL);
  EXPECT_GT(rows, rows1);
  EXPECT_GT(entries, entries1);
  const auto untouched = [&] {
    EXPECT_TRUE(std::all_of(offsets.begin(), offsets.end(), [](std::int64_t x) { return x == -7; }));
    EXPECT_TRUE(std::all_of(cols.begin(), cols.end(), [](std::int32_t x) { return x == -7; }));
  };
  untouched();
  offsets.assign(static_cast<std::size_t>(rows + 1), -7);
  cols.assign(static_cast<std::size_t>(entries), -7);
  EXPECT_EQ(dr_engine_layout(e.handle, 0, &rows, &entries, offsets.data(), cols.data(), error, sizeof error), DR_OK)
      << error;
  EXPECT_EQ(offsets.back(), entries);
  // Capacities one short of the layout (rows - 1 rows, or entries - 1 entries): too small, the
  // sizes come back and nothing is written.
  const std::int64_t need_rows = rows, need_entries = entries;
  for (const auto& [cap_rows, cap_entries] : {std::pair<std::int64_t, std::int64_t>{need_rows - 1, need_entries},
                                              {need_rows, need_entries - 1}}) {
    SCOPED_TRACE(std::to_string(cap_rows) + " rows, " + std::to_string(cap_entries) + " entries");
    offsets.assign(static_cast<std::size_t>(need_rows + 1), -7);
    cols.assign(static_cast<std::size_t>(need_entries), -7);
    rows = cap_rows;
    entries = cap_entries;
    EXPECT_EQ(dr_engine_layout(e.handle, 0, &rows, &entries, offsets.data(), cols.data(), error, sizeof error),
              DR_BUFFER_TOO_SMALL);
    EXPECT_EQ(rows, need_rows);
    EXPECT_EQ(entries, need_entries);
    untouched();
  }
}
