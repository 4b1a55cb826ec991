#include "dynamicrad/presets.h"

#include "dynamicrad/error.h"

namespace dynamicrad {

namespace {

struct Preset {
  const char* name;
  std::int64_t frames, height, width, heads, head_dim, text_tokens;
};

// PAPER.md "Model shapes that matter". HunyuanVideo's joint attention appends the prompt's text
// tokens after the video tokens (256 is the text encoder's padded prompt length).
constexpr Preset kPresets[] = {
    {"wan2.1-14b-480p", 21, 30, 52, 40, 128, 0},
    {"wan2.1-14b-720p", 21, 45, 80, 40, 128, 0},
    {"wan2.1-1.3b-480p", 21, 30, 52, 12, 128, 0},
    {"hunyuan-720p", 33, 45, 80, 24, 128, 256},
};

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

VideoGeometry preset_geometry(const std::string& name) {
  for (const Preset& p : kPresets) {
    if (name != p.name) continue;
    VideoGeometry g;
    g.frames = p.frames;
    g.height = p.height;
    g.width = p.width;
    g.heads = p.heads;
    g.head_dim = p.head_dim;
    g.text_tokens = p.text_tokens;
    g.text_placement = p.text_tokens > 0 ? TextPlacement::suffix : TextPlacement::none;
    g.block_size = 128;
    return g;
  }
  std::string known;
  for (const Preset& p : kPresets) known += std::string(known.empty() ? "" : ", ") + p.name;
  throw Error("preset", "\"" + name + "\" is unknown: allowed values are " + known);
}

}  // namespace dynamicrad
