// The tuner's proxy task (PAPER.md part 3, issue 4): Q/K/V of a motion regime from either
//   * drift:   the paper's auto-regressive feature drift (synthetic.h, drift = regime_drift()), or
//   * physics: the scene of scene.h. Every token gets a scene feature (background texture seen
//              through the panning camera, covered by the objects' own textures); each head
//              projects it into Q, K and V with its own random matrices, adds a head-specific
//              positional component to Q and K, and applies Wan's 3D RoPE (rope.h) to Q and K.
// Both are deterministic from the seed and resolution-relative (texture sizes and speeds scale
// with the frame), so parameters tuned on a small geometry mean the same on a larger one.
#pragma once

#include <cstdint>
#include <string>

#include "dynamicrad/geometry.h"
#include "dynamicrad/motion.h"
#include "dynamicrad/scene.h"
#include "dynamicrad/synthetic.h"

namespace dynamicrad {

enum class SceneKind { drift, physics };

std::string to_string(SceneKind kind);
// "drift", "physics"; throws Error(field, ...) otherwise.
SceneKind parse_scene_kind(const std::string& text, const std::string& field = "scene");

struct ProxyOptions {
  SceneKind kind = SceneKind::physics;
  MotionRegime regime = MotionRegime::mid;
  std::uint64_t seed = 1;
  // Scales Q so that softmax rows are peaked, (0, 100]; 0 picks the scene's default: 2 for drift
  // (synthetic.h's; larger values make its attention almost diagonal) and 6 for physics (a query
  // then keeps about 60-80% of its softmax mass inside a radial prior of gamma 0.25-1).
  double sharpness = 0.0;
};

// f32 tensors [batch, tokens, heads, head_dim] in the geometry's sequence order. Batch element b
// is an independent scene. Text tokens get unit-variance noise. Physics needs an even head_dim.
SyntheticQkv make_proxy_qkv(const VideoGeometry& geometry, const ProxyOptions& options);

// The physics scene's Q/K/V for explicit scene options (make_proxy_qkv uses
// physics_scene_options(regime, seed)).
SyntheticQkv make_physics_qkv(const VideoGeometry& geometry, const PhysicsSceneOptions& scene,
                              double sharpness);

}  // namespace dynamicrad
