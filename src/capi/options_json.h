// JSON text to engine options for the C ABI (c_api.h documents the form). Strict: unknown keys and
// wrong types are errors naming the JSON path ("options.geometry.frames").
#pragma once

#include <string>

#include "dynamicrad/engine.h"

namespace dynamicrad::capi {

EngineOptions parse_engine_options(const std::string& json_text);
VideoGeometry parse_geometry(const std::string& json_text, const std::string& field);
// The inverse of parse_geometry (batch left out).
std::string geometry_to_json(const VideoGeometry& geometry);

}  // namespace dynamicrad::capi
