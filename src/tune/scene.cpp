// The physics scene (scene.h): object and camera trajectories.
#include "dynamicrad/scene.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "dynamicrad/error.h"
#include "core/number_text.h"
#include "tune/random.h"

namespace dynamicrad {
namespace {

void require_range(double value, double lo, double hi, const char* field, const char* range) {
  if (!(value >= lo && value <= hi)) {
    throw Error(field, detail::shortest_text(value) + ": allowed range " + range);
  }
}

// Reflects one coordinate of a centre off [lo, hi]; flips velocity (and an outward acceleration).
void reflect(double& p, double& v, double& a, double lo, double hi) {
  if (hi <= lo) {  // the object is wider than the frame: it stays centred
    p = 0.5 * (lo + hi);
    v = 0.0;
    a = 0.0;
    return;
  }
  // A step can cross the interval more than once only when |v| > hi - lo; fold until inside.
  for (int bounce = 0; bounce < 64 && (p < lo || p > hi); ++bounce) {
    if (p < lo) {
      p = lo + (lo - p);
      v = std::abs(v);
      a = std::abs(a);
    } else {
      p = hi - (p - hi);
      v = -std::abs(v);
      a = -std::abs(a);
    }
  }
  p = std::clamp(p, lo, hi);
}

}  // namespace

void validate(const PhysicsSceneOptions& o) {
  if (o.objects < 0 || o.objects > 64) {
    throw Error("scene.objects", std::to_string(o.objects) + ": allowed range [0, 64]");
  }
  require_range(o.object_speed, 0.0, 1.0, "scene.object_speed", "[0, 1]");
  require_range(o.object_acceleration, 0.0, 0.2, "scene.object_acceleration", "[0, 0.2]");
  if (!(o.object_radius > 0.0 && o.object_radius <= 0.5)) {
    throw Error("scene.object_radius", detail::shortest_text(o.object_radius) + ": allowed range (0, 0.5]");
  }
  require_range(o.camera_speed, 0.0, 1.0, "scene.camera_speed", "[0, 1]");
  require_range(o.appearance_drift, 0.0, 1.0, "scene.appearance_drift", "[0, 1]");
}

PhysicsSceneOptions physics_scene_options(MotionRegime regime, std::uint64_t seed) {
  PhysicsSceneOptions o;
  o.seed = seed;
  // A latent frame is 4 video frames in Wan; "high" moves an object across a third of the frame
  // in about three latent frames (under a second of video), "low" barely moves in the whole clip.
  switch (regime) {
    case MotionRegime::low:
      o.object_speed = 0.01;
      o.object_acceleration = 0.0;
      o.camera_speed = 0.005;
      o.appearance_drift = 0.01;
      break;
    case MotionRegime::mid:
      o.object_speed = 0.04;
      o.object_acceleration = 0.004;
      o.camera_speed = 0.02;
      o.appearance_drift = 0.03;
      break;
    case MotionRegime::high:
      o.object_speed = 0.11;
      o.object_acceleration = 0.01;
      o.camera_speed = 0.05;
      o.appearance_drift = 0.06;
      break;
  }
  return o;
}

SceneObject step_object(const SceneObject& object, double height, double width) {
  SceneObject next = object;
  next.vy += next.ay;
  next.vx += next.ax;
  next.y += next.vy;
  next.x += next.vx;
  reflect(next.y, next.vy, next.ay, next.radius, height - 1.0 - next.radius);
  reflect(next.x, next.vx, next.ax, next.radius, width - 1.0 - next.radius);
  return next;
}

SceneTrajectory simulate_scene(const VideoGeometry& g, const PhysicsSceneOptions& o) {
  validate(g);
  validate(o);
  constexpr double kTwoPi = 6.283185307179586;
  const auto height = static_cast<double>(g.height), width = static_cast<double>(g.width);
  detail::SplitMix rng(detail::derive_seed(o.seed, 11));

  std::vector<SceneObject> state(static_cast<std::size_t>(o.objects));
  for (SceneObject& s : state) {
    // Radius 0.6x to 1.4x the mean; speed 0.5x to 1.5x the mean in a random direction.
    s.radius = std::max(0.5, o.object_radius * std::min(height, width) * rng.uniform(0.6, 1.4));
    s.y = rng.uniform(0.0, height - 1.0);
    s.x = rng.uniform(0.0, width - 1.0);
    const double heading = rng.uniform(0.0, kTwoPi);
    const double speed = o.object_speed * rng.uniform(0.5, 1.5);
    s.vy = speed * height * std::sin(heading);
    s.vx = speed * width * std::cos(heading);
    const double pull = rng.uniform(0.0, kTwoPi);
    s.ay = o.object_acceleration * height * std::sin(pull);
    s.ax = o.object_acceleration * width * std::cos(pull);
    double unused_v = 0.0, unused_a = 0.0;  // place the start inside the bounds
    reflect(s.y, unused_v, unused_a, s.radius, height - 1.0 - s.radius);
    reflect(s.x, unused_v, unused_a, s.radius, width - 1.0 - s.radius);
  }
  // The camera pans along one direction with a slow sway of its speed.
  const double pan = rng.uniform(0.0, kTwoPi);
  const double sway = rng.uniform(0.0, kTwoPi);

  SceneTrajectory out;
  double cy = 0.0, cx = 0.0;
  for (std::int64_t t = 0; t < g.frames; ++t) {
    if (t > 0) {
      for (SceneObject& s : state) s = step_object(s, height, width);
      const double speed = o.camera_speed * (1.0 + 0.3 * std::sin(sway + 0.5 * static_cast<double>(t)));
      cy += speed * height * std::sin(pan);
      cx += speed * width * std::cos(pan);
    }
    out.objects.push_back(state);
    out.camera_y.push_back(cy);
    out.camera_x.push_back(cx);
  }
  return out;
}

}  // namespace dynamicrad
