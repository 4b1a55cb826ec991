// The C ABI (c_api.h) on the CPU engine: status codes, messages naming fields, the two-call output
// pattern, and results equal to the C++ engine's. Runs under the sanitizers with the rest of CTest.
#include "dynamicrad/c_api.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "dynamicrad/device.h"
#include "dynamicrad/engine.h"
#include "dynamicrad/rotary.h"
#include "test_support.h"

namespace dr = dynamicrad;

namespace {

constexpr const char* kOptions =
    R"({"geometry": {"frames": 3, "height": 5, "width": 7, "heads": 2, "head_dim": 16, "block_size": 32},
        "prior": {"gamma": 0.5, "first_frame_sink": false}, "slots": 2, "threads": 1})";

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
  const dr_selection sel{DR_MODE_STATIC_RATIO, 0.5, 0.25, 0.0, 0.0};
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

  Engine e;
  ASSERT_EQ(dr_engine_create(kOptions, &e.handle, error, sizeof error), DR_OK) << error;
  dr_test::Rng rng(3);
  dr::HostTensor q = dr_test::random_tensor(rng, dr_test::make_shape(1, 104, 2, 16));  // one token short
  const dr_tensor cq = view(q);
  const dr_selection sel{DR_MODE_STATIC_RATIO, 0.5, 0.25, 0.0, 0.0};
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
}

TEST(CApi, DestroyIsSafeOnNullAndTheBuildIsDescribed) {
  dr_engine_destroy(nullptr);
  EXPECT_EQ(dr_built_with_cuda(), dr::built_with_cuda() ? 1 : 0);
  EXPECT_FALSE(std::string(dr_version()).empty());
}

}  // namespace
