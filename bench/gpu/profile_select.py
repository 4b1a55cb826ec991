"""Where layout selection spends its time: the engine's select() on a full-size layer (Wan2.1-14B
720p or HunyuanVideo 720p shapes, random bf16 Q/K), kernels timed with torch.profiler.

    python bench/gpu/profile_select.py --model wan --regime high --mode static-ratio
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

import dynamicrad

SHAPES = {
    "wan": dict(frames=21, height=45, width=80, heads=40, head_dim=128),
    "hunyuan": dict(frames=33, height=45, width=80, heads=24, head_dim=128, text_tokens=120, text_placement="suffix"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(SHAPES), default="wan")
    parser.add_argument("--regime", choices=dynamicrad.REGIMES, default="high")
    parser.add_argument("--mode", choices=dynamicrad.MODES, default="static-ratio")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    geometry = dynamicrad.Geometry(**SHAPES[args.model])
    entry = dynamicrad.lut_entry(args.regime, args.mode, geometry=geometry)
    start = time.perf_counter()
    engine = dynamicrad.Engine(geometry, prior=entry.prior, device="cuda")
    info = engine.describe()
    print(f"{args.model} {args.regime}/{args.mode}: prior built in {time.perf_counter() - start:.2f} s, "
          f"{info['blocks']} blocks, prior density {info['prior']['density']:.3f}")
    q = torch.randn(1, geometry.tokens, geometry.heads, geometry.head_dim, device="cuda", dtype=torch.bfloat16)
    k = torch.randn_like(q)
    for _ in range(3):
        engine.select(q, k, entry.selection, 0)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.repeats):
        engine.select(q, k, entry.selection, 0)
    torch.cuda.synchronize()
    wall = (time.perf_counter() - start) / args.repeats
    kept, total = engine.kept(0)
    print(f"select(): {1e3 * wall:.3f} ms a layer (wall, back to back), sparsity {1 - kept / total:.3f}")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(args.repeats):
            engine.select(q, k, entry.selection, 0)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
