"""The one-pass Q/K norm + rotary embedding (``dynamicrad.norm_rotary``) against the stock
processors' arithmetic, at full-size Wan2.1-14B 720p and HunyuanVideo 720p shapes (bf16, one tensor
of Q or K, random values). Prints milliseconds a call and the bandwidth of the one-pass kernel (one
read and one write of the tensor). Each timing spans `calls` back-to-back calls, so that the GPU
never waits for the host's per-call work (argument checks, launch), as inside a model's step; the
median of the timings divided by `calls` is reported.

    DYNAMICRAD_LIBRARY=.device-bin/libdynamicrad_c.so PYTHONPATH=python python3 bench/gpu/bench_rotary.py
"""

from __future__ import annotations

import statistics
import sys

import torch

import dynamicrad
from gpu_timing import gpu_seconds


def median_ms(fn, repeats: int = 10, calls: int = 20) -> float:
    for _ in range(3):
        fn()
    return 1e3 * statistics.median(gpu_seconds(fn, calls) for _ in range(repeats))


def wan() -> None:
    from dynamicrad.integrations.wan import _rotate

    n, h, d = 75600, 40, 128
    x = torch.randn(1, n, h, d, device="cuda", dtype=torch.bfloat16)
    weight = (1 + 0.1 * torch.randn(h * d, device="cuda")).to(torch.bfloat16)
    cos, sin = torch.randn(1, n, 1, d, device="cuda"), torch.randn(1, n, 1, d, device="cuda")
    norm = torch.nn.RMSNorm(h * d, eps=1e-6).to("cuda", torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(weight)
        ours = median_ms(lambda: dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin))
        rotation = median_ms(lambda: dynamicrad.rotary(x, cos, sin))
        stock = median_ms(lambda: _rotate(norm(x.flatten(2)).unflatten(2, (h, d)), cos, sin))
    report("Wan2.1-14B 720p", x, ours, rotation, stock)


def hunyuan() -> None:
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.normalization import RMSNorm

    video, text, h, d = 118800, 256, 24, 128
    x = torch.randn(1, video + text, h, d, device="cuda", dtype=torch.bfloat16)
    norm = RMSNorm(d, eps=1e-6).to("cuda", torch.bfloat16)
    cos, sin = torch.randn(video, d, device="cuda"), torch.randn(video, d, device="cuda")

    def stock_pass():
        y = norm(x)
        return torch.cat([apply_rotary_emb(y[:, :video], (cos, sin), sequence_dim=1), y[:, video:]], 1)

    with torch.no_grad():
        ours = median_ms(lambda: dynamicrad.norm_rotary(x, norm.weight, 1e-6, cos, sin, "hunyuan_video", video))
        pooled = median_ms(lambda: dynamicrad.norm_rotary_pooled(x, norm.weight, 1e-6, cos, sin, "hunyuan_video",
                                                                 video, 128, video // 128))
        stock = median_ms(stock_pass)
    report("HunyuanVideo 720p (single-stream, 256 text tokens)", x, ours, None, stock)
    print(f"  with the block means of the {video // 128} video blocks (norm_rotary_pooled): {pooled:.3f} ms "
          f"(+{pooled - ours:.3f} ms)", flush=True)


def report(name: str, x: torch.Tensor, ours: float, rotation, stock: float) -> None:
    gbs = 2 * x.numel() * x.element_size() / (ours * 1e-3) / 1e9
    line = f"{name}, {tuple(x.shape)} bf16: norm+rotary one pass {ours:.3f} ms ({gbs:.0f} GB/s)"
    if rotation is not None:
        line += f", rotation alone {rotation:.3f} ms"
    print(line + f"; stock norm + rotary {stock:.3f} ms ({stock / ours:.1f}x)", flush=True)


def main() -> int:
    if not torch.cuda.is_available():
        print("bench_rotary: needs a CUDA GPU", file=sys.stderr)
        return 1
    print(torch.cuda.get_device_name(), flush=True)
    wan()
    hunyuan()
    return 0


if __name__ == "__main__":
    sys.exit(main())
