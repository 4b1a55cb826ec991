/* DynamicRad's C ABI: what the Python package (python/dynamicrad, loaded with ctypes) and other
 * languages call. It wraps SparseAttentionEngine (engine.h) and the LUT (lut.h).
 *
 * Conventions. Every function that can fail returns DR_OK (0) or an error code and writes a
 * NUL-terminated message into `error` (at most error_size bytes; may be NULL). Messages start with
 * the offending field as the C++ library names it ("geometry.frames: ...", "options.slots: ...",
 * "q: ..."). Nothing here prints, exits or keeps global state. Tensors are [batch, tokens, heads,
 * head_dim], contiguous. Structured inputs and outputs are JSON text (UTF-8). A handle must not be
 * used after dr_engine_destroy (a destroyed handle is often, not always, recognised). */
#ifndef DYNAMICRAD_C_API_H
#define DYNAMICRAD_C_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DR_OK 0
#define DR_INVALID_ARGUMENT 1 /* bad input; the message names the field and allowed range */
#define DR_RUNTIME_ERROR 2    /* a device or system failure (CUDA error, out of memory) */
#define DR_BUFFER_TOO_SMALL 3 /* an output buffer is too small; *needed says how large */
#define DR_FILE_ERROR 4       /* a file could not be opened, read or written; the message names it */

#define DR_DTYPE_F32 0
#define DR_DTYPE_F16 1
#define DR_DTYPE_BF16 2

#define DR_MODE_STATIC_RATIO 0
#define DR_MODE_DYNAMIC_THRESHOLD 1

typedef struct dr_engine dr_engine;

typedef struct {
  void* data; /* host memory (cpu engine) or device memory (cuda engine) */
  int32_t dtype;
  int64_t batch;
  int64_t tokens;
  int64_t heads;
  int64_t head_dim;
} dr_tensor;

typedef struct {
  int32_t mode; /* DR_MODE_* */
  double r_near;
  double r_far;
  double tau_near;
  double tau_far;
} dr_selection;

const char* dr_version(void);
int dr_built_with_cuda(void);

/* options_json:
 *   {"geometry": {"frames": F, "height": H, "width": W, "heads": N, "head_dim": D,
 *                 "text_tokens": 0, "text_placement": "none" | "prefix" | "suffix",
 *                 "block_size": 128, "token_order": "raster" | "tiled3d", "tile": [t, h, w]},
 *    "prior": {"gamma": ..., "lambda": ..., "theta_m": ..., "theta_c": ...,
 *              "dense_adjacent": false, "first_frame_sink": true},
 *    "device": "cpu" | "cuda", "cuda_device": -1, "slots": 1, "keep_layouts": false,
 *    "scale": 0.0, "threads": 0}
 * Only geometry.frames/height/width/heads/head_dim are required; unknown keys are errors. */
int dr_engine_create(const char* options_json, dr_engine** engine, char* error, size_t error_size);
void dr_engine_destroy(dr_engine* engine);

/* The engine's device: *type 0 = cpu, 1 = cuda; *ordinal the CUDA device (-1 for cpu). Callers check
 * that tensors live there before passing pointers. */
int dr_engine_device(const dr_engine* engine, int32_t* type, int32_t* ordinal, char* error, size_t error_size);

/* JSON: {"tokens", "blocks", "prior": {"forced", "near", "far", "density"}, "device_bytes"}. */
int dr_engine_describe(const dr_engine* engine, char* json, size_t json_size, size_t* needed, char* error,
                       size_t error_size);

/* Selects the layout of `slot` from q and k; stream: a cudaStream_t or NULL. */
int dr_engine_select(dr_engine* engine, const dr_tensor* q, const dr_tensor* k, const dr_selection* selection,
                     int32_t slot, void* stream, char* error, size_t error_size);

/* dr_engine_select with the block means of the first pooled_blocks blocks already computed (the
 * pooled output of dr_norm_rotary): pooled_q, pooled_k float [batch, heads, pooled_blocks, head_dim]
 * in the engine's device memory; pooled_blocks in [0, blocks]; pool_block: the tokens each mean was
 * taken over, which must be the geometry's block_size (when pooled_blocks > 0). The layout equals
 * dr_engine_select's when the means are the pooling of q and k. */
int dr_engine_select_pooled(dr_engine* engine, const dr_tensor* q, const dr_tensor* k, const float* pooled_q,
                            const float* pooled_k, int64_t pooled_blocks, int32_t pool_block,
                            const dr_selection* selection, int32_t slot, void* stream, char* error,
                            size_t error_size);

/* Attention over the layout of `slot`; lse: float [batch, heads, tokens] or NULL. */
int dr_engine_attend(const dr_engine* engine, const dr_tensor* q, const dr_tensor* k, const dr_tensor* v,
                     const dr_tensor* out, float* lse, int32_t slot, void* stream, char* error, size_t error_size);

/* Dense attention (every block pair) on the engine's kernels: no layout, any batch (engine.h). */
int dr_engine_attend_dense(const dr_engine* engine, const dr_tensor* q, const dr_tensor* k, const dr_tensor* v,
                           const dr_tensor* out, float* lse, void* stream, char* error, size_t error_size);

/* Kept block pairs of the slot's last layout and the dense count (synchronises the device). */
int dr_engine_kept(const dr_engine* engine, int32_t slot, int64_t* kept, int64_t* total, char* error,
                   size_t error_size);

/* The slot's layout as CSR (see layout.h). Call with row_offsets and col_indices NULL to learn
 * *rows (rows + 1 offsets are written) and *entries, then with arrays of those sizes and *rows,
 * *entries still holding them: they are the arrays' capacities. If the layout has grown in between
 * (another select), the call returns DR_BUFFER_TOO_SMALL with the new sizes and writes nothing. */
int dr_engine_layout(const dr_engine* engine, int32_t slot, int64_t* rows, int64_t* entries, int64_t* row_offsets,
                     int32_t* col_indices, char* error, size_t error_size);

/* A PNG picture of one (batch, head) of the slot's layout over the engine's radial prior (picture.h:
 * forced blocks dark, kept candidates blue, dropped candidates grey). cell_pixels 0 picks a size. */
int dr_engine_mask_png(const dr_engine* engine, int32_t slot, int64_t batch, int64_t head, int32_t cell_pixels,
                       const char* path, char* error, size_t error_size);

/* How dr_norm_rotary normalises and rotates (rotary.h). */
typedef struct dr_norm_rotary_options {
  const float* norm_weight; /* NULL: rotation only; else [heads * head_dim] (scope 0) or [head_dim] (scope 1) */
  double norm_eps;          /* finite, >= 0 */
  int32_t norm_scope;       /* 0: all heads of a token (Wan), 1: each head (HunyuanVideo) */
  int32_t norm_weighting;   /* 0: weight in float (torch.nn.RMSNorm), 1: after rounding to x's dtype (diffusers' RMSNorm) */
  int32_t pairs;            /* 0: cos[2i] / sin[2i+1] for both (Wan), 1: each output its own entries (apply_rotary_emb) */
  int64_t rotated_tokens;   /* tokens [0, rotated_tokens) are rotated, the rest only normalised; -1: all */
  float* pooled;            /* NULL, or float [batch, heads, pooled_blocks, head_dim]: block means of out (rotary.h) */
  int32_t pool_block;       /* tokens a pooled block, >= 1 (with pooled) */
  int64_t pooled_blocks;    /* [1, ceil(tokens / pool_block)] (with pooled) */
} dr_norm_rotary_options;

/* The Q/K RMSNorm and rotary embedding in one pass (rotary.h): out = rotate(norm(x)) with cos / sin
 * tables [rotated tokens, head_dim] float; device 0 = cpu (host pointers), 1 = cuda (device pointers,
 * `stream`). `options` NULL: Wan's rotation of every token, no norm. */
int dr_norm_rotary(const dr_tensor* x, const dr_tensor* out, const dr_norm_rotary_options* options,
                   const float* cos_table, const float* sin_table, int32_t device, void* stream, char* error,
                   size_t error_size);

/* perm[p] = raster position of the token at sequence position p (geometry.h); `geometry_json` is the
 * "geometry" object above; n must equal the geometry's total tokens. */
int dr_token_permutation(const char* geometry_json, int64_t* perm, int64_t n, char* error, size_t error_size);

/* A named model geometry (presets.h) as the JSON "geometry" object of dr_engine_create, with
 * "heads" and "head_dim" of the model. An unknown name is an error listing the known ones. */
int dr_preset_geometry(const char* name, char* json, size_t json_size, size_t* needed, char* error, size_t error_size);

/* A LUT row, as a one-row LUT in JSON (lut.h).
 * lut_path: a LUT file, or NULL for the built-in table. mode: NULL or "" for the regime's default.
 * target_geometry_json: NULL to return the row as written; otherwise the dynamic-threshold taus are
 * converted to the target (tune_space.h) from the preset the LUT names in "calibrated_for", or from
 * lut_geometry (a preset name; NULL to rely on the LUT). An error names "lut_geometry" when neither
 * says, when they disagree, or when the preset is unknown. */
int dr_lut_entry(const char* lut_path, const char* regime, const char* mode, const char* target_geometry_json,
                 const char* lut_geometry, char* json, size_t json_size, size_t* needed, char* error,
                 size_t error_size);

#ifdef __cplusplus
}
#endif

#endif /* DYNAMICRAD_C_API_H */
