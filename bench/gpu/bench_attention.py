#!/usr/bin/env python3
"""GPU benchmark of DynamicRad's block-sparse attention against cuDNN, FlexAttention and FlashInfer.

For each model shape (Wan2.1-14B 480p / 720p, HunyuanVideo 720p; batch 1, head_dim 128, bf16) and
block density, one head-shared block layout (block 128) is built once and handed, as the same CSR,
to every sparse kernel:
  ours        plan_cuda_attention() through the C ABI in libdynamicrad_bench_capi.so (ctypes)
  flex        torch.nn.attention.flex_attention (compiled) with BlockMask.from_kv_blocks(...) holding
              the layout as full blocks (no mask_mod evaluation)
  flashinfer  flashinfer.BlockSparseAttentionWrapper(indptr, indices, R = C = 128), once per backend
              of --flashinfer-backends: "fa2" is how the reference implementation (Radial Attention's
              radial_attn/attn_mask.py) constructs it, "auto" is FlashInfer's own pick (FA3 on sm_90)
and cuDNN dense attention (torch SDPA, CUDNN_ATTENTION backend) is the dense reference.
Layouts: "band+random" rows keep round(density * blocks) key blocks, half as a band around the
diagonal and half uniformly at random (the shape of radial masks plus long-range picks), the same
for every head; "prior" is the preset's radial prior (default parameters); density 1 is the full
layout.

All kernels read the same q, k, v: [1, tokens, heads, 128] (the diffusers layout; torch baselines
get the [1, heads, tokens, 128] transposed view, FlashInfer the [tokens, heads, 128] view). Times are
CUDA-event medians after warm-up; with --rounds N every contender (cuDNN dense included) is timed
once per round, the order rotated between rounds, and the median over the rounds is reported with
its spread. Effective TFLOP/s counts the computed blocks only:
4 * kept_block_pairs * 128 * 128 * head_dim / time (dense: 4 * tokens^2 * heads * head_dim).
Outputs are cross-checked (relative L2 against FlexAttention / cuDNN on the same inputs).

FlashInfer needs N % 128 == 0: its K and V are zero-padded to blocks * 128 tokens (the same blocks
are computed; rows whose layout holds the short last block then also weigh the zero keys, so its
output is compared only on the other rows).
"""

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

BLOCK = 128
HEAD_DIM = 128
SHAPES = {  # name: (tokens, heads); PAPER.md "Model shapes that matter" (HunyuanVideo: + 256 text tokens)
    "wan2.1-14b-480p": (32760, 40),
    "wan2.1-14b-720p": (75600, 40),
    "hunyuan-720p": (119056, 24),
}
DEFAULT_DENSITIES = [0.10, 0.15, 0.25, 0.40, 1.0]


# ---------------------------------------------------------------------------------------------- layouts

def band_random_layout(blocks, density, seed):
    """CSR (row_offsets int64 [blocks + 1], col_indices int32) of one head."""
    if density >= 1.0:
        cols = np.tile(np.arange(blocks, dtype=np.int32), blocks)
        return np.arange(blocks + 1, dtype=np.int64) * blocks, cols
    rng = np.random.default_rng(seed)
    keep = max(1, int(round(density * blocks)))
    band = max(1, keep // 2)
    rows = []
    for r in range(blocks):
        lo = min(max(0, r - band // 2), blocks - band)
        chosen = set(range(lo, lo + band))
        others = np.setdiff1d(np.arange(blocks), np.fromiter(chosen, dtype=np.int64), assume_unique=True)
        extra = rng.choice(others, size=min(keep - band, len(others)), replace=False)
        rows.append(np.sort(np.concatenate([np.fromiter(chosen, dtype=np.int64), extra]).astype(np.int32)))
    offsets = np.zeros(blocks + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    return offsets, np.concatenate(rows)


def prior_layout(lib, preset):
    tokens, blocks, kept = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int64()
    err = ctypes.create_string_buffer(1024)
    if lib.dr_prior_layout(preset.encode(), ctypes.byref(tokens), ctypes.byref(blocks), ctypes.byref(kept),
                           None, None, err, 1024):
        raise RuntimeError(err.value.decode())
    offsets = np.zeros(blocks.value + 1, dtype=np.int64)
    cols = np.zeros(kept.value, dtype=np.int32)
    lib.dr_prior_layout(preset.encode(), ctypes.byref(tokens), ctypes.byref(blocks), ctypes.byref(kept),
                        offsets.ctypes.data_as(ctypes.c_void_p), cols.ctypes.data_as(ctypes.c_void_p), err, 1024)
    return offsets, cols


def replicate_heads(offsets, cols, heads):
    """The head-shared CSR as the engine's per-head CSR (rows (b * heads + h) * blocks + q_block)."""
    nnz = len(cols)
    all_offsets = np.concatenate([offsets[:-1] + h * nnz for h in range(heads)] + [[heads * nnz]]).astype(np.int64)
    return all_offsets, np.tile(cols, heads).astype(np.int32)


# ---------------------------------------------------------------------------------------------- timing

def time_ms(fn, budget_ms=1200.0, min_reps=3, max_reps=15):
    """Median CUDA-event time of fn() in ms after warm-up; returns (median, min, max, reps)."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    estimate = max(start.elapsed_time(end), 1e-3)
    reps = int(min(max_reps, max(min_reps, budget_ms / estimate)))
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), min(times), max(times), reps


def rel_l2(a, b, rows=None):
    a = a.float()
    b = b.float()
    if rows is not None:
        a, b = a[:, rows], b[:, rows]
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


# ---------------------------------------------------------------------------------------------- kernels

class Ours:
    def __init__(self, lib, offsets, cols, tokens, heads, kernel, schedule, stages):
        self.lib = lib
        err = ctypes.create_string_buffer(1024)
        self.handle = lib.dr_attention_plan(1, heads, tokens, BLOCK, offsets.ctypes.data_as(ctypes.c_void_p),
                                            cols.ctypes.data_as(ctypes.c_void_p), 1, HEAD_DIM, kernel, schedule,
                                            stages, err, 1024)
        if not self.handle:
            raise RuntimeError(err.value.decode())

    def __call__(self, q, k, v, out):
        err = ctypes.create_string_buffer(1024)
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        if self.lib.dr_attention_run(ctypes.c_void_p(self.handle), ctypes.c_void_p(q.data_ptr()),
                                     ctypes.c_void_p(k.data_ptr()), ctypes.c_void_p(v.data_ptr()),
                                     ctypes.c_void_p(out.data_ptr()), None, stream, err, 1024):
            raise RuntimeError(err.value.decode())
        return out

    def close(self):
        self.lib.dr_attention_free(ctypes.c_void_p(self.handle))


def load_capi(path):
    lib = ctypes.CDLL(path)
    lib.dr_attention_plan.restype = ctypes.c_void_p
    lib.dr_attention_plan.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p,
                                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                      ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.dr_attention_run.restype = ctypes.c_int
    lib.dr_attention_run.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_char_p, ctypes.c_int]
    lib.dr_attention_free.argtypes = [ctypes.c_void_p]
    lib.dr_prior_layout.restype = ctypes.c_int
    return lib


def flex_block_mask(offsets, cols, blocks, tokens):
    from torch.nn.attention.flex_attention import BlockMask
    counts = (offsets[1:] - offsets[:-1]).astype(np.int32)
    indices = np.zeros((blocks, blocks), dtype=np.int32)
    row_of = np.repeat(np.arange(blocks), counts)
    pos = np.arange(len(cols)) - np.repeat(offsets[:-1], counts)
    indices[row_of, pos] = cols
    kv_num = torch.from_numpy(counts).cuda().view(1, 1, blocks)
    kv_idx = torch.from_numpy(indices).cuda().view(1, 1, blocks, blocks)
    none = torch.zeros_like(kv_num)
    # Every kept block is a full block: FlexAttention then skips mask_mod entirely.
    try:
        return BlockMask.from_kv_blocks(none, kv_idx, kv_num, kv_idx, BLOCK_SIZE=BLOCK, seq_lengths=(tokens, tokens))
    except TypeError:
        return BlockMask.from_kv_blocks(none, kv_idx, kv_num, kv_idx, BLOCK_SIZE=BLOCK)


# ---------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capi", required=True, help="path of libdynamicrad_bench_capi.so")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated preset names")
    ap.add_argument("--densities", default=",".join(str(d) for d in DEFAULT_DENSITIES))
    ap.add_argument("--no-prior", action="store_true", help="skip the radial-prior layout")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--no-flashinfer", action="store_true")
    ap.add_argument("--flashinfer-backends", default="auto,fa2",
                    help="BlockSparseAttentionWrapper backends to time; the first gives the 'x FI' column, "
                         "the others get their own columns (default: auto = FA3 on sm_90, then fa2 as the "
                         "reference implementation uses it)")
    ap.add_argument("--variants-at", default="0.15,1.0",
                    help="densities at which the other kernel variants (stages, longest-first, mma.sync) are timed "
                         "too (always for the radial prior)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="interleaved timing rounds per layout (every contender once per round, the order rotated); "
                         "the median over rounds is reported, with its spread")
    ap.add_argument("--stages", type=int, default=0, help="wgmma K/V stages of the main 'ours' column (0: default)")
    ap.add_argument("--extra-capi", action="append", default=[], metavar="NAME=PATH",
                    help="another build of libdynamicrad_bench_capi.so (e.g. a kernel change under test), timed in "
                         "the same rounds as the column 'ours@NAME' and checked against 'ours'; repeatable")
    ap.add_argument("--json", default=None, help="write all results here")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")

    torch.manual_seed(0)
    dev = torch.cuda.get_device_properties(0)
    print(f"device: {dev.name}, {dev.multi_processor_count} SMs; torch {torch.__version__}, "
          f"cuDNN {torch.backends.cudnn.version()}; {time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)
    lib = load_capi(args.capi)
    extra_libs = []
    for spec in args.extra_capi:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--extra-capi: expected NAME=PATH, got {spec!r}")
        extra_libs.append((name, load_capi(path)))
    densities = [float(d) for d in args.densities.split(",") if d]
    variants_at = [float(d) for d in args.variants_at.split(",") if d]

    flashinfer = None
    flashinfer_note = "skipped (--no-flashinfer)"
    if not args.no_flashinfer:
        try:
            import flashinfer as _fi
            flashinfer = _fi
            flashinfer_note = f"flashinfer {getattr(_fi, '__version__', '?')}"
        except Exception as e:  # noqa: BLE001 - report why the baseline is missing
            flashinfer_note = f"import failed: {type(e).__name__}: {e}"
    print(f"flashinfer: {flashinfer_note}", flush=True)
    fi_backends = [b for b in args.flashinfer_backends.split(",") if b]
    if flashinfer is not None and not fi_backends:
        raise SystemExit("--flashinfer-backends: give at least one backend (auto, fa2, fa3)")
    flex = None
    if not args.no_flex:
        from torch.nn.attention.flex_attention import flex_attention
        flex = torch.compile(flex_attention, dynamic=False)

    results = []
    scale = 1.0 / math.sqrt(HEAD_DIM)
    for shape_name in args.shapes.split(","):
        tokens, heads = SHAPES[shape_name]
        blocks = (tokens + BLOCK - 1) // BLOCK
        q = torch.randn(1, tokens, heads, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
        k = torch.randn_like(q)
        v = torch.randn_like(q)
        out = torch.empty_like(q)
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # [1, heads, tokens, dim] views

        def cudnn():
            from torch.nn.attention import SDPBackend, sdpa_kernel
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return F.scaled_dot_product_attention(qh, kh, vh, scale=scale)

        dense_flops = 4.0 * tokens * tokens * heads * HEAD_DIM
        dense_out = cudnn()
        print(f"\n== {shape_name}: tokens {tokens}, heads {heads}, blocks {blocks} (cuDNN dense timed with every "
              f"layout)", flush=True)

        fi_k = fi_v = None
        if flashinfer is not None:
            fi_k = torch.zeros(blocks * BLOCK, heads, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
            fi_v = torch.zeros_like(fi_k)
            fi_k[:tokens] = k[0]
            fi_v[:tokens] = v[0]

        layouts = [("band+random", d) for d in densities]
        if not args.no_prior:
            layouts.append(("prior", None))
        for kind, density in layouts:
            if kind == "prior":
                offsets, cols = prior_layout(lib, shape_name)
            else:
                offsets, cols = band_random_layout(blocks, density, seed=blocks * 1000 + int(density * 1000))
            actual = len(cols) / blocks ** 2
            pairs = len(cols) * heads
            flops = 4.0 * pairs * BLOCK * BLOCK * HEAD_DIM
            all_offsets, all_cols = replicate_heads(offsets, cols, heads)
            row = {"shape": shape_name, "tokens": tokens, "heads": heads, "layout": kind, "density": actual,
                   "block_pairs": pairs}

            # Every contender is set up (and its output checked) first, then all are timed in `rounds`
            # interleaved rounds, so that slow drifts of the card (clocks, temperature) hit all alike.
            contenders = {"cudnn_dense": (cudnn, dense_flops)}
            closers = []

            # (name, kernel: 1 wgmma / 2 mma_sync, schedule: 0 head-major / 1 longest-first, wgmma stages)
            variants = [("ours", 1, 0, args.stages)]
            if density is None or any(abs(density - d) < 1e-9 for d in variants_at):
                variants += [("ours_2stage", 1, 0, 2), ("ours_3stage", 1, 0, 3), ("ours_longest_first", 1, 1, 0),
                             ("ours_mma_sync", 2, 0, 0)]
            ours_out = {}
            for name, kernel, schedule, stages in variants:
                try:
                    plan = Ours(lib, all_offsets, all_cols, tokens, heads, kernel, schedule, stages)
                    closers.append(plan.close)
                    o = torch.empty_like(q)
                    plan(q, k, v, o)
                    torch.cuda.synchronize()
                    ours_out[name] = o
                    contenders[name] = ((lambda plan=plan, o=o: plan(q, k, v, o)), flops)
                except Exception as e:  # noqa: BLE001
                    row[f"{name}_error"] = f"{type(e).__name__}: {e}"
            for extra_name, extra_lib in extra_libs:
                name = f"ours@{extra_name}"
                try:
                    plan = Ours(extra_lib, all_offsets, all_cols, tokens, heads, 1, 0, args.stages)
                    closers.append(plan.close)
                    o = torch.empty_like(q)
                    plan(q, k, v, o)
                    torch.cuda.synchronize()
                    if "ours" in ours_out:
                        row[f"check_{name}_vs_ours"] = rel_l2(o, ours_out["ours"])
                    contenders[name] = ((lambda plan=plan, o=o: plan(q, k, v, o)), flops)
                except Exception as e:  # noqa: BLE001
                    row[f"{name}_error"] = f"{type(e).__name__}: {e}"
            if "ours_mma_sync" in ours_out and "ours" in ours_out:
                row["check_wgmma_vs_mma_sync"] = rel_l2(ours_out["ours"], ours_out["ours_mma_sync"])
            if density is not None and density >= 1.0 and "ours" in ours_out:
                row["check_ours_vs_cudnn"] = rel_l2(ours_out["ours"], dense_out.transpose(1, 2))

            if flex is not None:
                try:
                    bm = flex_block_mask(offsets, cols, blocks, tokens)
                    fn = lambda bm=bm: flex(qh, kh, vh, block_mask=bm, scale=scale)  # noqa: E731
                    t0 = time.time()
                    fo = fn()
                    torch.cuda.synchronize()
                    row["flex_first_call_s"] = time.time() - t0
                    contenders["flex"] = (fn, flops)
                    if "ours" in ours_out:
                        row["check_ours_vs_flex"] = rel_l2(ours_out["ours"], fo.transpose(1, 2))
                    del fo
                except Exception as e:  # noqa: BLE001
                    row["flex_error"] = f"{type(e).__name__}: {e}"
                    traceback.print_exc()

            if flashinfer is not None:
                for backend in fi_backends:
                    prefix = "flashinfer" if backend == fi_backends[0] else f"flashinfer_{backend}"
                    fn = setup_flashinfer(flashinfer, backend, prefix, row, offsets, cols, tokens, blocks, heads,
                                          scale, q, fi_k, fi_v, ours_out.get("ours"))
                    if fn is not None:
                        contenders[prefix] = (fn, flops)

            samples = {name: [] for name in contenders}
            names = list(contenders)
            for r in range(args.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
                    samples[name].append(time_ms(contenders[name][0])[0])
            for name, times in samples.items():
                ms = statistics.median(times)
                row[f"{name}_ms"] = ms
                row[f"{name}_tflops"] = contenders[name][1] / ms / 1e9
                if len(times) > 1:
                    row[f"{name}_spread"] = (max(times) - min(times)) / ms  # over the rounds
            for close in closers:
                close()
            del contenders
            del ours_out
            torch.cuda.empty_cache()
            results.append(row)
            print_row(row, flush=True)

        del q, k, v, out, qh, kh, vh, dense_out, fi_k, fi_v
        torch.cuda.empty_cache()

    print_table(results, dev.name)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev.name, "torch": torch.__version__, "flashinfer": flashinfer_note,
                       "date": time.strftime("%Y-%m-%d %H:%M %Z"), "results": results}, f, indent=1)


def setup_flashinfer(flashinfer, backend, prefix, row, offsets, cols, tokens, blocks, heads, scale, q, fi_k, fi_v,
                     ours):
    """Plans BlockSparseAttentionWrapper(backend) on the layout, checks its output against ours and
    returns the call to time (None on failure, with row[prefix + '_error'])."""
    try:
        ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
        wrapper = flashinfer.BlockSparseAttentionWrapper(ws, backend=backend)
        t0 = time.time()
        wrapper.plan(torch.from_numpy(offsets.astype(np.int32)).cuda(),
                     torch.from_numpy(cols.astype(np.int32)).cuda(), tokens, blocks * BLOCK, BLOCK,
                     BLOCK, heads, heads, HEAD_DIM, sm_scale=scale, q_data_type=torch.bfloat16,
                     kv_data_type=torch.bfloat16, o_data_type=torch.bfloat16)
        fo = wrapper.run(q[0], fi_k, fi_v)
        torch.cuda.synchronize()
        row[f"{prefix}_first_call_s"] = time.time() - t0
        row[f"{prefix}_backend"] = getattr(wrapper, "_backend", backend)
        if ours is not None:
            # Rows whose layout holds the short last block differ by design (zero-padded keys).
            has_last = np.zeros(blocks, dtype=bool)
            for r in range(blocks):
                has_last[r] = blocks - 1 in cols[offsets[r]:offsets[r + 1]]
            token_rows = torch.from_numpy(np.repeat(~has_last, BLOCK)[:tokens]).cuda()
            if token_rows.any():
                row[f"check_ours_vs_{prefix}"] = rel_l2(ours, fo.unsqueeze(0), token_rows)
        del fo
        return lambda: wrapper.run(q[0], fi_k, fi_v)  # keeps the wrapper and its workspace alive
    except Exception as e:  # noqa: BLE001
        row[f"{prefix}_error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        return None


def fmt(row, key, spec):
    return format(row[key], spec) if key in row else "-"


def print_row(row, flush=False):
    keys = [k for k in row if k.endswith("_error") or k.startswith("check_") or k.endswith("_spread")
            or (k.startswith("ours") and k.endswith("_tflops") and k != "ours_tflops")]
    def show(k):
        if not isinstance(row[k], float):
            return f"{k}={row[k]}"
        return f"{k}={row[k]:.0f}" if k.endswith("_tflops") else f"{k}={row[k]:.2e}"
    extras = ", ".join(show(k) for k in keys)
    print(f"  {row['layout']:<11} density {row['density']:.3f}: ours {fmt(row, 'ours_ms', '.2f')} ms "
          f"({fmt(row, 'ours_tflops', '.0f')} TF/s), flex {fmt(row, 'flex_ms', '.2f')} ms, "
          f"flashinfer {fmt(row, 'flashinfer_ms', '.2f')} ms, fa2 {fmt(row, 'flashinfer_fa2_ms', '.2f')} ms  {extras}", flush=flush)


def print_table(results, device):
    print(f"\n### Block-sparse attention, bf16, head_dim 128, block 128, batch 1 ({device})")
    print("TF/s = effective TFLOP/s on computed blocks; x = their time / our time; "
          "vs cuDNN = our TF/s / cuDNN dense TF/s\n")
    header = ("| shape | layout | density | ours ms | ours TF/s | cuDNN dense TF/s | vs cuDNN | flex ms | flex TF/s "
              "| x flex | flashinfer ms | FI TF/s | x FI | FI fa2 ms | FI fa2 TF/s | x FI fa2 | 2-stage TF/s | 3-stage TF/s | longest-first TF/s | mma.sync TF/s |")
    print(header)
    print("|" + "|".join(["---"] * (header.count("|") - 1)) + "|")
    for r in results:
        vs = (r["ours_tflops"] / r["cudnn_dense_tflops"]) if "ours_tflops" in r else None
        xf = (r["flex_ms"] / r["ours_ms"]) if "flex_ms" in r and "ours_ms" in r else None
        xi = (r["flashinfer_ms"] / r["ours_ms"]) if "flashinfer_ms" in r and "ours_ms" in r else None
        x2 = (r["flashinfer_fa2_ms"] / r["ours_ms"]) if "flashinfer_fa2_ms" in r and "ours_ms" in r else None
        print(f"| {r['shape']} | {r['layout']} | {r['density']:.3f} | {fmt(r, 'ours_ms', '.2f')} | "
              f"{fmt(r, 'ours_tflops', '.0f')} | {r['cudnn_dense_tflops']:.0f} | "
              f"{'-' if vs is None else format(vs, '.2f')} | {fmt(r, 'flex_ms', '.2f')} | {fmt(r, 'flex_tflops', '.0f')} | "
              f"{'-' if xf is None else format(xf, '.2f')} | {fmt(r, 'flashinfer_ms', '.2f')} | "
              f"{fmt(r, 'flashinfer_tflops', '.0f')} | {'-' if xi is None else format(xi, '.2f')} | "
              f"{fmt(r, 'flashinfer_fa2_ms', '.2f')} | {fmt(r, 'flashinfer_fa2_tflops', '.0f')} | "
              f"{'-' if x2 is None else format(x2, '.2f')} | "
              f"{fmt(r, 'ours_2stage_tflops', '.0f')} | {fmt(r, 'ours_3stage_tflops', '.0f')} | "
              f"{fmt(r, 'ours_longest_first_tflops', '.0f')} | {fmt(r, 'ours_mma_sync_tflops', '.0f')} |")


if __name__ == "__main__":
    sys.exit(main())
