// JSON forms of the tuner (tune_json.h).
#include "dynamicrad/tune_json.h"

#include <nlohmann/json.hpp>

#include "dynamicrad/error.h"
#include "core/number_text.h"

namespace dynamicrad {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// The widest range each parameter may take in a request (the engine's own ranges).
void check_request(const TunedParams& p) {
  try {
    validate(p.prior);
  } catch (const Error& e) {
    throw Error("request.params." + e.field().substr(e.field().find('.') + 1),
                std::string(e.what()).substr(e.field().size() + 2));
  }
  auto unit = [](double v, const char* field) {
    if (!(v >= 0.0 && v <= 1.0)) throw Error(field, detail::shortest_text(v) + ": allowed range [0, 1]");
  };
  auto positive = [](double v, const char* field) {
    if (!(v > 0.0 && v <= 1e6)) throw Error(field, detail::shortest_text(v) + ": allowed range (0, 1e6]");
  };
  if (p.mode == TuneMode::static_ratio) {
    unit(p.r_near, "request.params.r_near");
    unit(p.r_far, "request.params.r_far");
  } else if (p.mode == TuneMode::dynamic_threshold) {
    positive(p.tau_near_rel, "request.params.tau_near_rel");
    positive(p.tau_far_rel, "request.params.tau_far_rel");
  }
}

}  // namespace

std::string search_space_to_json(const std::vector<TuneMode>& modes,
                                 const std::vector<BoundOverride>& bounds) {
  OrderedJson root = OrderedJson::object();
  for (TuneMode mode : modes) {
    const SearchSpace plain = tune_search_space(mode);
    std::vector<BoundOverride> own;
    for (const BoundOverride& b : bounds) {
      for (const Parameter& p : plain.parameters) {
        if (p.name == b.name) own.push_back(b);
      }
    }
    OrderedJson list = OrderedJson::array();
    for (const Parameter& p : tune_search_space(mode, own).parameters) {
      OrderedJson item;
      item["name"] = p.name;
      item["lo"] = p.kind == ParameterKind::boolean ? 0.0 : p.lo;
      item["hi"] = p.kind == ParameterKind::boolean ? 1.0 : p.hi;
      item["scale"] = p.scale == ParameterScale::log ? "log" : "linear";
      item["kind"] = p.kind == ParameterKind::boolean ? "boolean" : "continuous";
      list.push_back(item);
    }
    root[to_string(mode)] = list;
  }
  return root.dump();
}

EvaluateRequest parse_evaluate_request(const std::string& text) {
  Json root;
  try {
    root = Json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error("request", std::string("malformed JSON: ") + e.what());
  }
  if (!root.is_object()) throw Error("request", "expected a JSON object");
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() != "regime" && it.key() != "mode" && it.key() != "params") {
      throw Error("request." + it.key(), "unknown field; allowed fields are regime, mode, params");
    }
  }
  auto text_field = [&](const char* key) {
    if (!root.contains(key) || !root[key].is_string()) {
      throw Error(std::string("request.") + key, "missing or not a string");
    }
    return root[key].get<std::string>();
  };
  EvaluateRequest request;
  request.regime = parse_motion_regime(text_field("regime"), "request.regime");
  const TuneMode mode = parse_tune_mode(text_field("mode"), "request.mode");
  if (!root.contains("params") || !root["params"].is_object()) {
    throw Error("request.params", "missing or not an object");
  }
  const Json& params = root["params"];
  const SearchSpace space = tune_search_space(mode);
  std::string names;
  for (const Parameter& p : space.parameters) names += (names.empty() ? "" : ", ") + p.name;
  for (auto it = params.begin(); it != params.end(); ++it) {
    bool known = false;
    for (const Parameter& p : space.parameters) known = known || p.name == it.key();
    if (!known) {
      throw Error("request.params." + it.key(),
                  "not a parameter of mode " + to_string(mode) + "; allowed names are " + names);
    }
  }
  std::vector<double> point;
  for (const Parameter& p : space.parameters) {
    const std::string field = "request.params." + p.name;
    if (!params.contains(p.name)) throw Error(field, "missing; mode " + to_string(mode) + " needs " + names);
    const Json& v = params[p.name];
    if (p.kind == ParameterKind::boolean) {
      if (!v.is_boolean()) throw Error(field, "expected true or false");
      point.push_back(v.get<bool>() ? 1.0 : 0.0);
    } else {
      if (!v.is_number()) throw Error(field, "expected a number");
      point.push_back(v.get<double>());
    }
  }
  request.params = params_from_point(mode, space, point);
  check_request(request.params);
  return request;
}

std::string evaluation_to_json(const Evaluation& e) {
  OrderedJson out;
  out["loss"] = e.loss;
  out["error"] = e.error;
  out["sparsity"] = e.sparsity;
  out["relative_l2"] = e.relative_l2;
  out["seconds"] = e.seconds;
  return out.dump();
}

}  // namespace dynamicrad
