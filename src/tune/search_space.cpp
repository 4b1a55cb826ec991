// Search spaces and the space-filling design (bayesopt.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "dynamicrad/bayesopt.h"
#include "dynamicrad/error.h"
#include "core/number_text.h"
#include "tune/random.h"

namespace dynamicrad {

int SearchSpace::index(const std::string& name) const {
  std::string known;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    if (parameters[i].name == name) return static_cast<int>(i);
    known += (known.empty() ? "" : ", ") + parameters[i].name;
  }
  throw Error("search_space", "no parameter named \"" + name + "\"; known parameters are " + known);
}

void validate(const SearchSpace& space) {
  if (space.parameters.empty()) throw Error("search_space", "no parameters");
  for (std::size_t i = 0; i < space.parameters.size(); ++i) {
    const Parameter& p = space.parameters[i];
    if (p.name.empty()) throw Error("search_space", "parameter " + std::to_string(i) + " has no name");
    for (std::size_t j = 0; j < i; ++j) {
      if (space.parameters[j].name == p.name) {
        throw Error("search_space." + p.name, "appears twice; names must be unique");
      }
    }
    if (p.kind == ParameterKind::boolean) continue;
    const std::string field = "search_space." + p.name;
    if (!(std::isfinite(p.lo) && std::isfinite(p.hi) && p.lo < p.hi)) {
      throw Error(field, "bounds [" + detail::shortest_text(p.lo) + ", " + detail::shortest_text(p.hi) +
                             "]: need finite lo < hi");
    }
    if (p.scale == ParameterScale::log && !(p.lo > 0.0)) {
      throw Error(field, "bounds [" + detail::shortest_text(p.lo) + ", " + detail::shortest_text(p.hi) +
                             "]: a log-scaled parameter needs lo > 0");
    }
  }
}

std::vector<double> to_natural(const SearchSpace& space, const std::vector<double>& unit) {
  std::vector<double> out(unit.size());
  for (std::size_t i = 0; i < unit.size(); ++i) {
    const Parameter& p = space.parameters[i];
    const double u = std::clamp(unit[i], 0.0, 1.0);
    if (p.kind == ParameterKind::boolean) {
      out[i] = u >= 0.5 ? 1.0 : 0.0;
    } else if (p.scale == ParameterScale::log) {
      out[i] = std::exp(std::log(p.lo) + u * (std::log(p.hi) - std::log(p.lo)));
    } else {
      out[i] = p.lo + u * (p.hi - p.lo);
    }
    if (p.kind != ParameterKind::boolean) out[i] = std::clamp(out[i], p.lo, p.hi);
  }
  return out;
}

std::vector<double> to_unit(const SearchSpace& space, const std::vector<double>& natural) {
  std::vector<double> out(natural.size());
  for (std::size_t i = 0; i < natural.size(); ++i) {
    const Parameter& p = space.parameters[i];
    double u;
    if (p.kind == ParameterKind::boolean) {
      u = natural[i] >= 0.5 ? 1.0 : 0.0;
    } else if (p.scale == ParameterScale::log) {
      u = (std::log(natural[i]) - std::log(p.lo)) / (std::log(p.hi) - std::log(p.lo));
    } else {
      u = (natural[i] - p.lo) / (p.hi - p.lo);
    }
    out[i] = std::clamp(u, 0.0, 1.0);
  }
  return out;
}

std::vector<double> snap(const SearchSpace& space, std::vector<double> unit) {
  for (std::size_t i = 0; i < unit.size(); ++i) {
    unit[i] = std::clamp(unit[i], 0.0, 1.0);
    if (space.parameters[i].kind == ParameterKind::boolean) unit[i] = unit[i] >= 0.5 ? 1.0 : 0.0;
  }
  return unit;
}

std::vector<std::vector<double>> latin_hypercube(int n, int dims, std::uint64_t seed, int candidates) {
  if (n < 1) throw Error("design.points", std::to_string(n) + ": allowed range [1, inf)");
  if (dims < 1) throw Error("design.dims", std::to_string(dims) + ": allowed range [1, inf)");
  if (candidates < 1) {
    throw Error("design.candidates", std::to_string(candidates) + ": allowed range [1, inf)");
  }
  detail::SplitMix rng(detail::derive_seed(seed, 31));
  std::vector<std::vector<double>> best;
  double best_spread = -1.0;
  std::vector<int> strata(static_cast<std::size_t>(n));
  for (int c = 0; c < candidates; ++c) {
    std::vector<std::vector<double>> points(static_cast<std::size_t>(n),
                                            std::vector<double>(static_cast<std::size_t>(dims)));
    for (int d = 0; d < dims; ++d) {
      std::iota(strata.begin(), strata.end(), 0);
      for (int i = n - 1; i > 0; --i) {  // Fisher-Yates
        std::swap(strata[i], strata[rng.below(static_cast<std::uint64_t>(i) + 1)]);
      }
      for (int i = 0; i < n; ++i) {
        points[i][d] = (static_cast<double>(strata[i]) + rng.uniform()) / static_cast<double>(n);
      }
    }
    double spread = std::numeric_limits<double>::infinity();
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < i; ++j) {
        double d2 = 0.0;
        for (int d = 0; d < dims; ++d) d2 += (points[i][d] - points[j][d]) * (points[i][d] - points[j][d]);
        spread = std::min(spread, d2);
      }
    }
    if (spread > best_spread) {
      best_spread = spread;
      best = std::move(points);
    }
  }
  return best;
}

RandomSearch::RandomSearch(SearchSpace space, std::uint64_t seed)
    : space_(std::move(space)), seed_(seed) {
  validate(space_);
}

std::vector<double> RandomSearch::ask() {
  detail::SplitMix rng(detail::derive_seed(seed_, 32, count_++));
  std::vector<double> unit(static_cast<std::size_t>(space_.dims()));
  for (double& u : unit) u = rng.uniform();
  return to_natural(space_, snap(space_, unit));
}

}  // namespace dynamicrad
