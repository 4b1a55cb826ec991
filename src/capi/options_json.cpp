#include "capi/options_json.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>

#include "dynamicrad/error.h"

namespace dynamicrad::capi {

namespace {

using nlohmann::json;

json parse_object(const std::string& text, const std::string& field) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(field, std::string("is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error(field, "must be a JSON object");
  return j;
}

void only_keys(const json& j, const std::string& field, std::initializer_list<const char*> keys) {
  for (const auto& item : j.items()) {
    bool known = false;
    std::string allowed;
    for (const char* k : keys) {
      known = known || item.key() == k;
      allowed += allowed.empty() ? k : std::string(", ") + k;
    }
    if (!known) throw Error(field + "." + item.key(), "unknown key; allowed keys: " + allowed);
  }
}

// An integer of type T: Error naming `name` for a value of another kind or outside T's range (JSON
// integers are 64-bit; a plain conversion would wrap).
template <class T>
T integer(const json& v, const std::string& name) {
  static_assert(std::is_integral_v<T> && std::is_signed_v<T>, "signed integers only");
  if (!v.is_number_integer()) throw Error(name, "must be an integer");
  const bool too_large = v.is_number_unsigned() ? v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max())
                                                : v.get<std::int64_t>() > std::numeric_limits<T>::max();
  const bool too_small = !v.is_number_unsigned() && v.get<std::int64_t>() < std::numeric_limits<T>::min();
  if (too_large || too_small) {
    throw Error(name, v.dump() + ": outside the integer range [" + std::to_string(std::numeric_limits<T>::min()) +
                          ", " + std::to_string(std::numeric_limits<T>::max()) + "]");
  }
  return static_cast<T>(v.get<std::int64_t>());
}

template <class T>
T get(const json& j, const char* key, const std::string& field, T fallback, bool required = false) {
  const auto it = j.find(key);
  if (it == j.end()) {
    if (required) throw Error(field + "." + key, "is required");
    return fallback;
  }
  const std::string name = field + "." + key;
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) throw Error(name, "must be true or false");
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) throw Error(name, "must be a string");
  } else if constexpr (std::is_integral_v<T>) {
    return integer<T>(*it, name);
  } else {
    if (!it->is_number()) throw Error(name, "must be a number");
  }
  return it->get<T>();
}

VideoGeometry geometry_from(const json& j, const std::string& field) {
  if (!j.is_object()) throw Error(field, "must be a JSON object");
  only_keys(j, field, {"frames", "height", "width", "heads", "head_dim", "text_tokens", "text_placement",
                       "block_size", "token_order", "tile"});
  VideoGeometry g;
  g.frames = get<std::int64_t>(j, "frames", field, 0, true);
  g.height = get<std::int64_t>(j, "height", field, 0, true);
  g.width = get<std::int64_t>(j, "width", field, 0, true);
  g.heads = get<std::int64_t>(j, "heads", field, 0, true);
  g.head_dim = get<std::int64_t>(j, "head_dim", field, 0, true);
  g.text_tokens = get<std::int64_t>(j, "text_tokens", field, 0);
  g.text_placement = parse_text_placement(get<std::string>(j, "text_placement", field, "none"));
  g.block_size = get<int>(j, "block_size", field, 128);
  g.order = parse_token_order(get<std::string>(j, "token_order", field, "raster"));
  if (const auto it = j.find("tile"); it != j.end()) {
    if (!it->is_array() || it->size() != 3) throw Error(field + ".tile", "must be [t, h, w] (three integers)");
    g.tile = Tile{integer<int>((*it)[0], field + ".tile[0]"), integer<int>((*it)[1], field + ".tile[1]"),
                  integer<int>((*it)[2], field + ".tile[2]")};
  }
  validate(g);
  return g;
}

RadialPriorParams prior_from(const json& j, const std::string& field) {
  if (!j.is_object()) throw Error(field, "must be a JSON object");
  only_keys(j, field, {"gamma", "lambda", "theta_m", "theta_c", "dense_adjacent", "first_frame_sink"});
  RadialPriorParams p;
  p.gamma = get<double>(j, "gamma", field, p.gamma);
  p.lambda = get<double>(j, "lambda", field, p.lambda);
  p.theta_m = get<double>(j, "theta_m", field, p.theta_m);
  p.theta_c = get<double>(j, "theta_c", field, p.theta_c);
  p.dense_adjacent = get<bool>(j, "dense_adjacent", field, p.dense_adjacent);
  p.first_frame_sink = get<bool>(j, "first_frame_sink", field, p.first_frame_sink);
  validate(p);
  return p;
}

}  // namespace

EngineOptions parse_engine_options(const std::string& json_text) {
  const std::string field = "options";
  const json j = parse_object(json_text, field);
  only_keys(j, field, {"geometry", "prior", "device", "cuda_device", "slots", "keep_layouts", "scale", "threads"});
  EngineOptions o;
  if (!j.contains("geometry")) throw Error("options.geometry", "is required");
  o.geometry = geometry_from(j["geometry"], "options.geometry");
  if (j.contains("prior")) o.prior = prior_from(j["prior"], "options.prior");
  const std::string device = get<std::string>(j, "device", field, "cpu");
  if (device != "cpu" && device != "cuda") throw Error("options.device", "\"" + device + "\": allowed values are cpu, cuda");
  o.device = device == "cuda" ? Device::cuda : Device::cpu;
  o.cuda_device = get<int>(j, "cuda_device", field, -1);
  if (o.device == Device::cpu && j.contains("cuda_device")) {
    throw Error("options.cuda_device", "given, but options.device is cpu: it applies to device cuda only");
  }
  o.slots = get<int>(j, "slots", field, 1);
  o.keep_layouts = get<bool>(j, "keep_layouts", field, false);
  o.scale = get<double>(j, "scale", field, 0.0);
  o.threads = get<int>(j, "threads", field, 0);
  return o;
}

std::string geometry_to_json(const VideoGeometry& g) {
  json j;
  j["frames"] = g.frames;
  j["height"] = g.height;
  j["width"] = g.width;
  j["heads"] = g.heads;
  j["head_dim"] = g.head_dim;
  j["text_tokens"] = g.text_tokens;
  j["text_placement"] = to_string(g.text_placement);
  j["block_size"] = g.block_size;
  j["token_order"] = to_string(g.order);
  if (g.tile.t != 0) j["tile"] = {g.tile.t, g.tile.h, g.tile.w};
  return j.dump();
}

VideoGeometry parse_geometry(const std::string& json_text, const std::string& field) {
  return geometry_from(parse_object(json_text, field), field);
}

}  // namespace dynamicrad::capi
