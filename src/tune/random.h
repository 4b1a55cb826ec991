// The tuner's random numbers: SplitMix64, the same stream on every platform and standard library, so
// that a seed fixes every scene, design and candidate set. One generator per purpose (a scene, an
// optimizer) keeps results independent of the order in which other parts draw.
#pragma once

#include <cmath>
#include <cstdint>

namespace dynamicrad::detail {

class SplitMix {
 public:
  explicit SplitMix(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), n >= 1.
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  // Standard normal (Box-Muller, one value per call).
  double normal() {
    constexpr double kTwoPi = 6.283185307179586;
    const double u1 = (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
  }

 private:
  std::uint64_t state_;
};

// A seed for one named purpose derived from a user seed, so that streams never overlap by accident.
inline std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t purpose, std::uint64_t index = 0) {
  SplitMix mix(seed ^ (purpose * 0x100000001b3ull) ^ (index * 0xc2b2ae3d27d4eb4full));
  mix.next();
  return mix.next();
}

}  // namespace dynamicrad::detail
