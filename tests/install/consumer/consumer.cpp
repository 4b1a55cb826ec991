// The README's "Using the library" example, as a user's program built against the installed
// package (check_install.cmake checks that every line of the README's example is here). It checks
// what it computes: the block-sparse output must match the double-precision reference restricted
// to the same layout.
#include <cmath>
#include <cstdio>
#include <exception>

#include "dynamicrad/attention.h"
#include "dynamicrad/error.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/lut.h"
#include "dynamicrad/metrics.h"
#include "dynamicrad/presets.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/synthetic.h"

using namespace dynamicrad;

namespace {

int run() {
  // A small video so that the dense reference takes milliseconds; the preset shows the named form.
  VideoGeometry g = preset_geometry("wan2.1-14b-480p");
  g.frames = 13;
  g.height = 8;
  g.width = 16;
  g.heads = 2;
  g.head_dim = 64;
  g.block_size = 64;
  const SyntheticQkv qkv = make_synthetic_qkv(g, SyntheticOptions{});
  const ConstTensor q = qkv.q.view();
  const ConstTensor k = qkv.k.view();
  const ConstTensor v = qkv.v.view();

  // The README's lines.
  const Lut lut = default_lut();
  const LutEntry& row = lut.find(MotionRegime::high, SelectionMode::dynamic_threshold);
  RadialPrior prior = build_radial_prior(g, row.prior);
  PooledBlocks pooled = pool_blocks(q, k, g);
  BlockLayout layout = select_blocks(prior, pooled, row.selection);
  HostTensor out_buffer(DType::f32, q.shape);
  const MutableTensor out = out_buffer.mutable_view();
  auto attention = plan_cpu_attention(layout, AttentionOptions{});
  attention->run(AttentionArgs{q, k, v, out});

  HostTensor reference(DType::f32, q.shape);
  attention_reference(AttentionArgs{q, k, v, reference.mutable_view()}, AttentionOptions{}, &layout);
  const double error = relative_l2_error(out, reference.view());
  const double sparsity = layout_stats(layout, &prior).sparsity;
  std::printf("consumer_cpp: sparsity %.4f, relative L2 error against the reference %.3g\n", sparsity, error);
  if (!(error < 1e-5) || !(sparsity > 0.0)) {
    std::fprintf(stderr, "consumer_cpp: expected error < 1e-5 and sparsity > 0\n");
    return 1;
  }

  // Bad input is an Error naming the field.
  try {
    VideoGeometry bad = g;
    bad.block_size = 48;
    validate(bad);
    std::fprintf(stderr, "consumer_cpp: block_size 48 was accepted\n");
    return 1;
  } catch (const Error& e) {
    if (e.field() != "geometry.block_size") {
      std::fprintf(stderr, "consumer_cpp: error names '%s', expected geometry.block_size\n", e.field().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main() {
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer_cpp: %s\n", e.what());
    return 1;
  }
}
