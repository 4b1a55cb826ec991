"""The engine's device-layout attention (round-robin schedule, plan_cuda_layout_attention) against
the host-planned kernel (plan_cuda_attention: head-major and longest-first list schedules) on the
same Wan2.1-14B 720p layout, random bf16 Q/K/V.

    DYNAMICRAD_LIBRARY=.device-bin/libdynamicrad_c.so PYTHONPATH=python \
        python bench/gpu/bench_schedule.py --capi .device-bin/libdynamicrad_bench_capi.so
"""

from __future__ import annotations

import argparse
import ctypes
import sys

import torch

import dynamicrad


def timed(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capi", required=True, help="libdynamicrad_bench_capi.so (bench/gpu/attention_capi.cpp)")
    parser.add_argument("--ratios", default="0.2389,0.1218,0.0045", help="static-ratio r (80/85/90%% at Wan 720p)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    capi = ctypes.CDLL(args.capi)
    capi.dr_attention_plan.restype = ctypes.c_void_p
    capi.dr_attention_plan.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                       ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    capi.dr_attention_run.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_char_p, ctypes.c_int]
    capi.dr_attention_free.argtypes = [ctypes.c_void_p]

    geometry = dynamicrad.Geometry.preset("wan2.1-14b-720p")
    prior = dynamicrad.lut_entry("high", "static-ratio").prior
    engine = dynamicrad.Engine(geometry, prior=prior, device="cuda")
    shape = (1, geometry.tokens, geometry.heads, geometry.head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    out = torch.empty_like(q)
    print(f"{'r':>8} {'density':>8} {'engine (round-robin)':>22} {'head-major plan':>18} {'longest-first plan':>20}")
    for r in (float(x) for x in args.ratios.split(",")):
        engine.select(q, k, dynamicrad.Selection("static-ratio", r_near=r, r_far=r), 0)
        kept, total = engine.kept(0)
        flops = 4.0 * kept * 128 ** 3
        t_engine = timed(lambda: engine.attend(q, k, v, out, None, 0), args.repeats)
        ref = out.clone()
        offsets, cols = engine.layout(0)
        row = [f"{r:8.4f} {kept / total:8.3f} {t_engine:9.2f} ms {flops / t_engine / 1e9:5.0f} TF/s"]
        for schedule in (0, 1):
            err = ctypes.create_string_buffer(512)
            plan = capi.dr_attention_plan(1, geometry.heads, geometry.tokens, 128, offsets.data_ptr(), cols.data_ptr(),
                                          1, 128, 0, schedule, 0, err, 512)
            if not plan:
                print("plan failed:", err.value.decode(), file=sys.stderr)
                return 1
            stream = torch.cuda.current_stream().cuda_stream

            def run():
                capi.dr_attention_run(plan, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), None, stream, err, 512)

            t = timed(run, args.repeats)
            same = torch.equal(out, ref)
            capi.dr_attention_free(plan)
            row.append(f"{t:7.2f} ms {flops / t / 1e9:5.0f} TF/s{'' if same else ' (differs!)'}")
        print("  ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
