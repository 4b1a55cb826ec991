// Shortest round-trip text of a double (number_text.h).
#include "core/number_text.h"

#include <charconv>

namespace dynamicrad::detail {

std::string shortest_text(double value) {
  // std::to_chars without a precision writes the fewest digits that round-trip (C++17); 32
  // characters hold the longest such form ("-2.2250738585072014e-308").
  char buffer[32];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

}  // namespace dynamicrad::detail
