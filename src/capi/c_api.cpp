// The C ABI (c_api.h): converts, calls the engine, and turns exceptions into codes and messages.
#include "dynamicrad/c_api.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "capi/options_json.h"
#include "dynamicrad/device.h"
#include "dynamicrad/engine.h"
#include "dynamicrad/error.h"
#include "dynamicrad/lut.h"
#include "dynamicrad/picture.h"
#include "dynamicrad/presets.h"
#include "dynamicrad/rotary.h"
#include "dynamicrad/tune_space.h"

#ifndef DYNAMICRAD_VERSION
#define DYNAMICRAD_VERSION "0.0.0"
#endif

namespace dr = dynamicrad;

// A live engine carries a tag so that a stale or foreign handle is refused, not dereferenced blindly.
struct dr_engine {
  static constexpr std::uint64_t kTag = 0x44796e5261644531ULL;  // "DynRadE1"
  std::uint64_t tag = kTag;
  std::unique_ptr<dr::SparseAttentionEngine> engine;
};

namespace {

void write_message(const std::string& message, char* error, size_t error_size) {
  if (error == nullptr || error_size == 0) return;
  const size_t n = std::min(message.size(), error_size - 1);
  std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

// Thrown by a body whose output arrays are too small (the sizes needed are already written).
struct TooSmall {};

// Runs `body`, mapping exceptions: Error -> invalid argument (runtime for CUDA failures); nothing
// crosses the C boundary.
template <class Body>
int guarded(char* error, size_t error_size, Body&& body) {
  try {
    body();
    return DR_OK;
  } catch (const TooSmall&) {
    write_message("the output arrays are smaller than the sizes now written to *rows / *entries", error, error_size);
    return DR_BUFFER_TOO_SMALL;
  } catch (const dr::FileError& e) {
    write_message(e.what(), error, error_size);
    return DR_FILE_ERROR;
  } catch (const dr::Error& e) {
    write_message(e.what(), error, error_size);
    return e.field() == "cuda" ? DR_RUNTIME_ERROR : DR_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    write_message("out of host memory", error, error_size);
    return DR_RUNTIME_ERROR;
  } catch (const std::exception& e) {
    write_message(e.what(), error, error_size);
    return DR_RUNTIME_ERROR;
  } catch (...) {
    write_message("an unknown exception", error, error_size);
    return DR_RUNTIME_ERROR;
  }
}

dr::SparseAttentionEngine& live(const dr_engine* handle) {
  if (handle == nullptr || handle->tag != dr_engine::kTag || !handle->engine) {
    throw dr::Error("engine", "is not a live engine handle (null, destroyed or foreign)");
  }
  return *handle->engine;
}

dr::DType dtype_of(std::int32_t code, const char* name) {
  switch (code) {
    case DR_DTYPE_F32: return dr::DType::f32;
    case DR_DTYPE_F16: return dr::DType::f16;
    case DR_DTYPE_BF16: return dr::DType::bf16;
  }
  throw dr::Error(name, "dtype code " + std::to_string(code) + ": allowed 0 (f32), 1 (f16), 2 (bf16)");
}

dr::Shape shape_of(const dr_tensor& t) { return dr::Shape{t.batch, t.tokens, t.heads, t.head_dim}; }

dr::ConstTensor const_tensor(const dr_tensor* t, const char* name) {
  if (t == nullptr) throw dr::Error(name, "is null");
  return dr::ConstTensor{t->data, dtype_of(t->dtype, name), shape_of(*t)};
}

dr::MutableTensor mutable_tensor(const dr_tensor* t, const char* name) {
  if (t == nullptr) throw dr::Error(name, "is null");
  return dr::MutableTensor{t->data, dtype_of(t->dtype, name), shape_of(*t)};
}

dr::AttentionArgs attention_args(const dr_tensor* q, const dr_tensor* k, const dr_tensor* v, const dr_tensor* out,
                                 float* lse, void* stream) {
  dr::AttentionArgs args;
  args.q = const_tensor(q, "q");
  args.k = const_tensor(k, "k");
  args.v = const_tensor(v, "v");
  args.out = mutable_tensor(out, "out");
  args.lse = lse;
  args.stream = stream;
  return args;
}

dr::SelectionParams selection_of(const dr_selection* s) {
  if (s == nullptr) throw dr::Error("selection", "is null");
  dr::SelectionParams p;
  if (s->mode != DR_MODE_STATIC_RATIO && s->mode != DR_MODE_DYNAMIC_THRESHOLD) {
    throw dr::Error("selection.mode", std::to_string(s->mode) + ": allowed 0 (static-ratio), 1 (dynamic-threshold)");
  }
  p.mode = s->mode == DR_MODE_STATIC_RATIO ? dr::SelectionMode::static_ratio : dr::SelectionMode::dynamic_threshold;
  p.r_near = s->r_near;
  p.r_far = s->r_far;
  p.tau_near = s->tau_near;
  p.tau_far = s->tau_far;
  return p;
}

// Copies `text` into a caller buffer; DR_BUFFER_TOO_SMALL (with *needed) when it does not fit.
int write_text(const std::string& text, char* out, size_t out_size, size_t* needed, char* error, size_t error_size) {
  if (needed != nullptr) *needed = text.size() + 1;
  if (out == nullptr || out_size < text.size() + 1) {
    write_message("output buffer of " + std::to_string(out_size) + " bytes is too small: " +
                      std::to_string(text.size() + 1) + " needed",
                  error, error_size);
    return DR_BUFFER_TOO_SMALL;
  }
  std::memcpy(out, text.c_str(), text.size() + 1);
  return DR_OK;
}

}  // namespace

extern "C" {

const char* dr_version(void) { return DYNAMICRAD_VERSION; }

int dr_built_with_cuda(void) { return dr::built_with_cuda() ? 1 : 0; }

int dr_engine_create(const char* options_json, dr_engine** engine, char* error, size_t error_size) {
  return guarded(error, error_size, [&] {
    if (engine == nullptr) throw dr::Error("engine", "output pointer is null");
    *engine = nullptr;
    if (options_json == nullptr) throw dr::Error("options", "is null");
    auto handle = std::make_unique<dr_engine>();
    handle->engine = std::make_unique<dr::SparseAttentionEngine>(dr::capi::parse_engine_options(options_json));
    *engine = handle.release();
  });
}

void dr_engine_destroy(dr_engine* engine) {
  if (engine == nullptr || engine->tag != dr_engine::kTag) return;
  engine->tag = 0;
  delete engine;
}

int dr_engine_device(const dr_engine* engine, int32_t* type, int32_t* ordinal, char* error, size_t error_size) {
  return guarded(error, error_size, [&] {
    if (type == nullptr || ordinal == nullptr) throw dr::Error("type", "output pointers are null");
    const dr::EngineOptions& o = live(engine).options();
    *type = o.device == dr::Device::cuda ? 1 : 0;
    *ordinal = o.device == dr::Device::cuda ? o.cuda_device : -1;
  });
}

int dr_engine_describe(const dr_engine* engine, char* json, size_t json_size, size_t* needed, char* error,
                       size_t error_size) {
  std::string text;
  const int status = guarded(error, error_size, [&] {
    const dr::SparseAttentionEngine& e = live(engine);
    const dr::RadialPrior& p = e.prior();
    text = "{\"tokens\": " + std::to_string(e.tokens()) + ", \"blocks\": " + std::to_string(p.blocks) +
           ", \"prior\": {\"forced\": " + std::to_string(p.count(dr::BlockKind::forced)) +
           ", \"near\": " + std::to_string(p.count(dr::BlockKind::near)) +
           ", \"far\": " + std::to_string(p.count(dr::BlockKind::far)) + ", \"density\": " + std::to_string(p.density()) +
           "}, \"device_bytes\": " + std::to_string(e.device_bytes()) + "}";
  });
  return status != DR_OK ? status : write_text(text, json, json_size, needed, error, error_size);
}

int dr_engine_select(dr_engine* engine, const dr_tensor* q, const dr_tensor* k, const dr_selection* selection,
                     int32_t slot, void* stream, char* error, size_t error_size) {
  return guarded(error, error_size, [&] {
    live(engine).select(const_tensor(q, "q"), const_tensor(k, "k"), selection_of(selection), slot, stream);
  });
}

int dr_engine_select_pooled(dr_engine* engine, const dr_tensor* q, const dr_tensor* k, const float* pooled_q,
                            const float* pooled_k, int64_t pooled_blocks, int32_t pool_block,
                            const dr_selection* selection, int32_t slot, void* stream, char* error,
                            size_t error_size) {
  return guarded(error, error_size, [&] {
    dr::PooledPrefix pooled;
    pooled.q = pooled_q;
    pooled.k = pooled_k;
    pooled.blocks = pooled_blocks;
    pooled.block_size = pool_block;
    live(engine).select(const_tensor(q, "q"), const_tensor(k, "k"), selection_of(selection), slot, stream, pooled);
  });
}

int dr_engine_attend(const dr_engine* engine, const dr_tensor* q, const dr_tensor* k, const dr_tensor* v,
                     const dr_tensor* out, float* lse, int32_t slot, void* stream, char* error, size_t error_size) {
  return guarded(error, error_size, [&] { live(engine).attend(attention_args(q, k, v, out, lse, stream), slot); });
}

int dr_engine_attend_dense(const dr_engine* engine, const dr_tensor* q, const dr_tensor* k, const dr_tensor* v,
                           const dr_tensor* out, float* lse, void* stream, char* error, size_t error_size) {
  return guarded(error, error_size, [&] { live(engine).attend_dense(attention_args(q, k, v, out, lse, stream)); });
}

int dr_engine_kept(const dr_engine* engine, int32_t slot, int64_t* kept, int64_t* total, char* error,
                   size_t error_size) {
  return guarded(error, error_size, [&] {
    if (kept == nullptr || total == nullptr) throw dr::Error("kept", "output pointers are null");
    const dr::KeptBlocks k = live(engine).kept(slot);
    *kept = k.kept;
    *total = k.total;
  });
}

int dr_engine_layout(const dr_engine* engine, int32_t slot, int64_t* rows, int64_t* entries, int64_t* row_offsets,
                     int32_t* col_indices, char* error, size_t error_size) {
  return guarded(error, error_size, [&] {
    if (rows == nullptr || entries == nullptr) throw dr::Error("rows", "output pointers are null");
    const dr::BlockLayout l = live(engine).layout(slot);
    const int64_t need_rows = l.rows(), need_entries = static_cast<int64_t>(l.col_indices.size());
    const bool copy = row_offsets != nullptr || col_indices != nullptr;
    const bool fits = (row_offsets == nullptr || *rows >= need_rows) && (col_indices == nullptr || *entries >= need_entries);
    *rows = need_rows;
    *entries = need_entries;
    if (copy && !fits) throw TooSmall{};
    if (row_offsets != nullptr) std::copy(l.row_offsets.begin(), l.row_offsets.end(), row_offsets);
    if (col_indices != nullptr) std::copy(l.col_indices.begin(), l.col_indices.end(), col_indices);
  });
}

int dr_engine_mask_png(const dr_engine* engine, int32_t slot, int64_t batch, int64_t head, int32_t cell_pixels,
                       const char* path, char* error, size_t error_size) {
  return guarded(error, error_size, [&] {
    if (path == nullptr) throw dr::Error("path", "is null");
    const dr::SparseAttentionEngine& e = live(engine);
    const dr::BlockLayout layout = e.layout(slot);
    if (batch < 0 || batch >= layout.batch) {
      throw dr::Error("batch", std::to_string(batch) + ": allowed range [0, " + std::to_string(layout.batch - 1) + "]");
    }
    if (head < 0 || head >= layout.heads) {
      throw dr::Error("head", std::to_string(head) + ": allowed range [0, " + std::to_string(layout.heads - 1) + "]");
    }
    dr::MaskPictureOptions o;
    o.batch = batch;
    o.head = head;
    o.cell_pixels = cell_pixels;
    dr::write_mask_png(path, e.prior(), layout, o);
  });
}

int dr_norm_rotary(const dr_tensor* x, const dr_tensor* out, const dr_norm_rotary_options* options,
                   const float* cos_table, const float* sin_table, int32_t device, void* stream, char* error,
                   size_t error_size) {
  return guarded(error, error_size, [&] {
    if (device != 0 && device != 1) throw dr::Error("device", std::to_string(device) + ": allowed 0 (cpu), 1 (cuda)");
    dr_norm_rotary_options o{};  // NULL: Wan's rotation of every token
    o.rotated_tokens = -1;
    if (options != nullptr) o = *options;
    // An option code 0 or 1 as the enum value it names.
    const auto pick = [](int32_t value, const char* field, const char* allowed, auto if0, auto if1) {
      if (value != 0 && value != 1) throw dr::Error(field, std::to_string(value) + ": allowed " + allowed);
      return value == 0 ? if0 : if1;
    };
    dr::RotaryArgs a;
    a.x = const_tensor(x, "x");
    a.out = mutable_tensor(out, "out");
    a.cos = cos_table;
    a.sin = sin_table;
    a.pairs = pick(o.pairs, "pairs", "0 (shared), 1 (per element)", dr::RotaryPairs::shared,
                   dr::RotaryPairs::per_element);
    a.rotated_tokens = o.rotated_tokens;
    a.norm_weight = o.norm_weight;
    a.norm_scope = pick(o.norm_scope, "norm_scope", "0 (token), 1 (head)", dr::NormScope::token, dr::NormScope::head);
    a.norm_weighting = pick(o.norm_weighting, "norm_weighting", "0 (in float), 1 (after rounding)",
                            dr::NormWeighting::in_float, dr::NormWeighting::after_rounding);
    a.norm_eps = o.norm_eps;
    a.pooled = o.pooled;
    a.pool_block = o.pool_block;
    a.pooled_blocks = o.pooled_blocks;
    a.stream = stream;
    dr::apply_rotary(a, device == 1 ? dr::Device::cuda : dr::Device::cpu);
  });
}

int dr_token_permutation(const char* geometry_json, int64_t* perm, int64_t n, char* error, size_t error_size) {
  return guarded(error, error_size, [&] {
    if (geometry_json == nullptr) throw dr::Error("geometry", "is null");
    const dr::VideoGeometry g = dr::capi::parse_geometry(geometry_json, "geometry");
    const std::vector<std::int64_t> p = dr::token_permutation(g);
    if (perm == nullptr || n != static_cast<int64_t>(p.size())) {
      throw dr::Error("perm", "needs " + std::to_string(p.size()) + " entries, got " + std::to_string(n));
    }
    std::copy(p.begin(), p.end(), perm);
  });
}

int dr_preset_geometry(const char* name, char* json, size_t json_size, size_t* needed, char* error, size_t error_size) {
  std::string text;
  const int status = guarded(error, error_size, [&] {
    if (name == nullptr) throw dr::Error("preset", "is null");
    text = dr::capi::geometry_to_json(dr::preset_geometry(name));
  });
  return status != DR_OK ? status : write_text(text, json, json_size, needed, error, error_size);
}

int dr_lut_entry(const char* lut_path, const char* regime, const char* mode, const char* target_geometry_json,
                 const char* lut_geometry, char* json, size_t json_size, size_t* needed, char* error,
                 size_t error_size) {
  std::string text;
  const int status = guarded(error, error_size, [&] {
    if (regime == nullptr) throw dr::Error("regime", "is null");
    const dr::Lut lut = lut_path != nullptr ? dr::load_lut(lut_path) : dr::default_lut();
    const dr::MotionRegime r = dr::parse_motion_regime(regime, "regime");
    const dr::SelectionMode m = mode != nullptr && mode[0] != '\0' ? dr::parse_selection_mode(mode, "mode")
                                                                   : dr::default_mode(r);
    dr::LutEntry entry;
    try {
      entry = lut.find(r, m);
    } catch (const dr::Error& e) {  // name the file the row is missing from
      if (lut_path == nullptr) throw;
      throw dr::Error(lut_path, std::string(e.what()).substr(e.field().size() + 2));
    }
    if (target_geometry_json != nullptr && m == dr::SelectionMode::dynamic_threshold) {
      const dr::VideoGeometry target = dr::capi::parse_geometry(target_geometry_json, "target_geometry");
      const std::string given = lut_geometry != nullptr ? lut_geometry : "";
      if (!given.empty() && !lut.calibrated_for.empty() && given != lut.calibrated_for) {
        throw dr::Error("lut_geometry", "\"" + given + "\" contradicts the LUT, which says it is calibrated for \"" +
                                            lut.calibrated_for + "\"");
      }
      const std::string source = !given.empty() ? given : lut.calibrated_for;
      if (source.empty()) {
        throw dr::Error("lut_geometry", "the LUT does not say which geometry its dynamic-threshold taus are "
                                        "calibrated for (no \"calibrated_for\"): pass the preset it was tuned with");
      }
      try {
        entry = dr::lut_entry_for(dr::tuned_from_lut(entry, dr::preset_geometry(source)), r, target);
      } catch (const dr::Error& e) {
        if (e.field() != "preset") throw;
        throw dr::Error("lut_geometry", e.what());
      }
    }
    dr::Lut row;
    row.entries = {entry};
    row.calibrated_for = lut.calibrated_for;
    text = dr::lut_to_json(row);
  });
  return status != DR_OK ? status : write_text(text, json, json_size, needed, error, error_size);
}

}  // extern "C"
