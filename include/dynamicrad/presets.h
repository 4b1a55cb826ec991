// Named model geometries (PAPER.md "Model shapes that matter"), block 128, batch 1.
#pragma once

#include <string>
#include <vector>

#include "dynamicrad/geometry.h"

namespace dynamicrad {

// "wan2.1-14b-480p", "wan2.1-14b-720p", "wan2.1-1.3b-480p", "hunyuan-720p".
std::vector<std::string> preset_names();
// Throws Error listing the known names.
VideoGeometry preset_geometry(const std::string& name);

}  // namespace dynamicrad
