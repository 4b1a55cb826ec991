/* The C ABI (c_api.h) from a C program built against the installed package. Two frames with the
 * adjacent frame and the first-frame sink forced dense give a full layout, so the engine's sparse
 * attention must equal its dense attention; a bad geometry must fail naming the field. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynamicrad/c_api.h"

enum { kBatch = 1, kTokens = 2 * 8 * 8, kHeads = 2, kHeadDim = 64 };
#define ELEMENTS ((size_t)kBatch * kTokens * kHeads * kHeadDim)

static float next_value(unsigned* state) {
  *state = *state * 1664525u + 1013904223u;
  return (float)(*state >> 8) / 16777216.0f - 0.5f;
}

static int fail(const char* what, const char* error) {
  fprintf(stderr, "consumer_c: %s: %s\n", what, error);
  return 1;
}

int main(void) {
  static float q[ELEMENTS], k[ELEMENTS], v[ELEMENTS], sparse[ELEMENTS], dense[ELEMENTS];
  char error[512] = "";
  unsigned state = 1;
  size_t i;
  for (i = 0; i < ELEMENTS; ++i) {
    q[i] = next_value(&state);
    k[i] = next_value(&state);
    v[i] = next_value(&state);
  }

  dr_engine* bad = NULL;
  if (dr_engine_create("{\"geometry\": {\"frames\": 0, \"height\": 8, \"width\": 8, \"heads\": 2, \"head_dim\": 64}}",
                       &bad, error, sizeof error) != DR_INVALID_ARGUMENT ||
      strncmp(error, "geometry.frames", strlen("geometry.frames")) != 0) {
    return fail("frames 0 should be refused naming geometry.frames", error);
  }

  dr_engine* engine = NULL;
  const char* options =
      "{\"geometry\": {\"frames\": 2, \"height\": 8, \"width\": 8, \"heads\": 2, \"head_dim\": 64, \"block_size\": 64},"
      " \"prior\": {\"gamma\": 1.0, \"lambda\": 4.0, \"theta_m\": 0.5, \"theta_c\": 0.0,"
      " \"dense_adjacent\": true, \"first_frame_sink\": true}, \"device\": \"cpu\"}";
  if (dr_engine_create(options, &engine, error, sizeof error) != DR_OK) return fail("dr_engine_create", error);

  const dr_tensor tq = {q, DR_DTYPE_F32, kBatch, kTokens, kHeads, kHeadDim};
  const dr_tensor tk = {k, DR_DTYPE_F32, kBatch, kTokens, kHeads, kHeadDim};
  const dr_tensor tv = {v, DR_DTYPE_F32, kBatch, kTokens, kHeads, kHeadDim};
  const dr_tensor ts = {sparse, DR_DTYPE_F32, kBatch, kTokens, kHeads, kHeadDim};
  const dr_tensor td = {dense, DR_DTYPE_F32, kBatch, kTokens, kHeads, kHeadDim};
  const dr_selection selection = {DR_MODE_STATIC_RATIO, 0.5, 0.5, 0.0, 0.0};
  int64_t kept = 0, total = 0;
  if (dr_engine_select(engine, &tq, &tk, &selection, 0, NULL, error, sizeof error) != DR_OK ||
      dr_engine_attend(engine, &tq, &tk, &tv, &ts, NULL, 0, NULL, error, sizeof error) != DR_OK ||
      dr_engine_attend_dense(engine, &tq, &tk, &tv, &td, NULL, NULL, error, sizeof error) != DR_OK ||
      dr_engine_kept(engine, 0, &kept, &total, error, sizeof error) != DR_OK) {
    dr_engine_destroy(engine);
    return fail("engine call", error);
  }
  dr_engine_destroy(engine);

  double diff = 0.0, norm = 0.0;
  for (i = 0; i < ELEMENTS; ++i) {
    diff += (double)(sparse[i] - dense[i]) * (sparse[i] - dense[i]);
    norm += (double)dense[i] * dense[i];
  }
  const double error_l2 = sqrt(diff / norm);
  printf("consumer_c: version %s, cuda %d, kept %lld of %lld block pairs, sparse vs dense %.3g\n", dr_version(),
         dr_built_with_cuda(), (long long)kept, (long long)total, error_l2);
  if (kept != total || total == 0 || !(error_l2 < 1e-6)) {
    fprintf(stderr, "consumer_c: expected a full layout and sparse == dense (error < 1e-6)\n");
    return 1;
  }
  return 0;
}
