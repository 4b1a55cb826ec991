// A physics-based proxy scene (issue 4): moving objects carrying their own features over a textured
// background, seen by a panning camera, so that attention has to follow content across frames
// instead of the isotropic drift of synthetic.h.
//
// Units are relative to the frame so that a regime means the same motion at every resolution:
// positions and radii are in tokens, but speeds are given in frame heights / widths per latent
// frame and converted with the geometry's height and width.
//
// Physics, per frame step (semi-implicit Euler): v += a; p += v; then each axis of the centre is
// reflected off [r, size - 1 - r] (r = the object's radius, or the frame centre when the object is
// wider than the frame), flipping the sign of that velocity component and of that acceleration
// component when it points outwards. Centres therefore never leave the frame.
#pragma once

#include <cstdint>
#include <vector>

#include "dynamicrad/geometry.h"
#include "dynamicrad/motion.h"

namespace dynamicrad {

struct PhysicsSceneOptions {
  int objects = 4;                   // moving objects, [0, 64]
  double object_speed = 0.04;        // mean speed, frame sizes per frame, [0, 1]
  double object_acceleration = 0.0;  // acceleration magnitude, frame sizes per frame^2, [0, 0.2]
  double object_radius = 0.18;       // mean radius as a share of min(height, width), (0, 0.5]
  double camera_speed = 0.02;        // camera pan, frame sizes per frame, [0, 1]
  double appearance_drift = 0.02;    // AR drift of background and object textures per frame, [0, 1]
  std::uint64_t seed = 1;
};

// Throws Error naming the field and its allowed range.
void validate(const PhysicsSceneOptions& options);

// The motion of each regime: low = slow objects and an almost still camera, high = fast,
// accelerating objects and a fast pan (see scene.cpp for the figures).
PhysicsSceneOptions physics_scene_options(MotionRegime regime, std::uint64_t seed);

struct SceneObject {
  double y = 0.0, x = 0.0;    // centre, tokens
  double vy = 0.0, vx = 0.0;  // velocity, tokens per frame
  double ay = 0.0, ax = 0.0;  // acceleration, tokens per frame^2
  double radius = 1.0;        // tokens
};

struct SceneTrajectory {
  std::vector<std::vector<SceneObject>> objects;  // [frames][objects]
  std::vector<double> camera_y;                   // [frames]: camera offset, tokens
  std::vector<double> camera_x;                   // [frames]
};

// One step of the physics above for a frame of height x width tokens.
SceneObject step_object(const SceneObject& object, double height, double width);

// Object states and camera offsets for every frame of the geometry. Deterministic from the seed.
SceneTrajectory simulate_scene(const VideoGeometry& geometry, const PhysicsSceneOptions& options);

}  // namespace dynamicrad
