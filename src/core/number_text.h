// Numbers in error messages: the shortest text that reads back as the same double, so a message
// never shows a value the user did not give ("1.0000001", not "1.000000"; "-1e-300", not
// "-0.000000").
#pragma once

#include <string>

namespace dynamicrad::detail {

// 0.5 -> "0.5", 1.0000001 -> "1.0000001", 1e-300 -> "1e-300", 1e20 -> "1e+20", NaN -> "nan".
std::string shortest_text(double value);

}  // namespace dynamicrad::detail
