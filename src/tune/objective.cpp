// The tuner's objective (objective.h).
#include "dynamicrad/objective.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <string>

#include "core/clock.h"
#include "dynamicrad/attention.h"
#include "dynamicrad/error.h"
#include "dynamicrad/metrics.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "core/number_text.h"
#include "tune/device_objective.h"

namespace dynamicrad {
namespace {

using detail::seconds_since;

const float* floats(const HostTensor& t) { return static_cast<const float*>(t.view().data); }

}  // namespace

void validate(const ObjectiveOptions& o) {
  validate(o.geometry);
  if (!(o.target_sparsity >= 0.0 && o.target_sparsity < 1.0)) {
    throw Error("objective.target_sparsity", detail::shortest_text(o.target_sparsity) + ": allowed range [0, 1)");
  }
  if (!(o.penalty >= 0.0 && o.penalty <= 1e6)) {
    throw Error("objective.penalty", detail::shortest_text(o.penalty) + ": allowed range [0, 1e6]");
  }
  if (o.threads < 0) {
    throw Error("objective.threads", std::to_string(o.threads) + ": allowed range [0, inf)");
  }
}

double sparsity_penalty(double sparsity, double target, double penalty) {
  return sparsity < target ? penalty * (target - sparsity) : 0.0;
}

ProxyObjective::ProxyObjective(const ObjectiveOptions& options) : options_(options) {
  validate(options_);
  const auto start = std::chrono::steady_clock::now();
  const VideoGeometry& g = options_.geometry;
  ProxyOptions proxy;
  proxy.kind = options_.scene;
  proxy.regime = options_.regime;
  proxy.seed = options_.scene_seed;
  qkv_ = make_proxy_qkv(g, proxy);
  if (options_.device == Device::cuda) {
    device_ = std::make_shared<const DeviceObjective>(qkv_, g);
    dense_variance_ = device_->dense_variance();
    qkv_ = SyntheticQkv{};  // the scene now lives on the GPU
    setup_seconds_ = seconds_since(start);
    return;
  }
  pooled_ = pool_blocks(qkv_.q.view(), qkv_.k.view(), g);
  const Shape shape = qkv_.q.shape();
  dense_ = HostTensor(DType::f32, shape);
  AttentionOptions attention;
  attention.threads = options_.threads;
  const AttentionArgs args{qkv_.q.view(), qkv_.k.view(), qkv_.v.view(), dense_.mutable_view(), nullptr};
  if (options_.dense == DenseOracle::reference) {
    attention_reference(args, attention);
  } else {
    plan_cpu_attention(full_layout(shape.batch, shape.heads, shape.tokens, g.block_size), attention)
        ->run(args);
  }
  const float* d = floats(dense_);
  const std::int64_t n = shape.elements();
  double mean = 0.0;
  for (std::int64_t i = 0; i < n; ++i) mean += d[i];
  mean /= static_cast<double>(n);
  double var = 0.0;
  for (std::int64_t i = 0; i < n; ++i) var += (d[i] - mean) * (d[i] - mean);
  dense_variance_ = var / static_cast<double>(n);
  if (!(dense_variance_ > 0.0)) {
    throw Error("objective", "the dense attention output has zero variance; nothing to compare");
  }
  setup_seconds_ = seconds_since(start);
}

BlockLayout ProxyObjective::layout_for(const TunedParams& params) const {
  const VideoGeometry& g = options_.geometry;
  const RadialPrior prior = build_radial_prior(g, params.prior, options_.threads);
  if (params.mode == TuneMode::radial_prior) return layout_from_prior(prior, g.batch, g.heads);
  if (device_) return device_->select(prior, selection_for(params, prior));
  return select_blocks(prior, pooled_, selection_for(params, prior));
}

Evaluation ProxyObjective::evaluate(const TunedParams& params) const {
  const auto start = std::chrono::steady_clock::now();
  Evaluation e = evaluate_layout(layout_for(params));
  e.seconds = seconds_since(start);
  return e;
}

double ProxyObjective::sparsity(const TunedParams& params) const {
  if (device_ && params.mode != TuneMode::radial_prior) {
    const RadialPrior prior = build_radial_prior(options_.geometry, params.prior, options_.threads);
    return device_->sparsity(prior, selection_for(params, prior));
  }
  return layout_stats(layout_for(params), nullptr).sparsity;
}

Evaluation ProxyObjective::evaluate_layout(const BlockLayout& layout) const {
  const auto start = std::chrono::steady_clock::now();
  Evaluation e;
  e.sparsity = layout_stats(layout, nullptr).sparsity;
  if (device_) {
    const DeviceEvaluation d = device_->evaluate(layout);
    e.error = d.mse / dense_variance_;
    e.relative_l2 = d.relative_l2;
    e.loss = e.error + sparsity_penalty(e.sparsity, options_.target_sparsity, options_.penalty);
    e.seconds = seconds_since(start);
    return e;
  }
  const Shape shape = qkv_.q.shape();
  HostTensor sparse(DType::f32, shape);
  AttentionOptions attention;
  attention.threads = options_.threads;
  plan_cpu_attention(layout, attention)
      ->run(AttentionArgs{qkv_.q.view(), qkv_.k.view(), qkv_.v.view(), sparse.mutable_view(), nullptr});
  const float* s = floats(sparse);
  const float* d = floats(dense_);
  double sum_sq = 0.0;
  for (std::int64_t i = 0; i < shape.elements(); ++i) {
    const double diff = static_cast<double>(s[i]) - d[i];
    sum_sq += diff * diff;
  }
  e.error = sum_sq / static_cast<double>(shape.elements()) / dense_variance_;
  e.relative_l2 = relative_l2_error(sparse.view(), dense_.view());
  e.loss = e.error + sparsity_penalty(e.sparsity, options_.target_sparsity, options_.penalty);
  e.seconds = seconds_since(start);
  return e;
}

}  // namespace dynamicrad
