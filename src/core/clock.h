// Wall-clock helper for the library's timing fields (evaluation and tuning times).
#pragma once

#include <chrono>

namespace dynamicrad::detail {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace dynamicrad::detail
