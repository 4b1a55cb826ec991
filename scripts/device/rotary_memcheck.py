"""compute-sanitizer target: the one-pass rotary and norm+rotary kernels (Wan's row norm,
HunyuanVideo's per-head norm with unrotated text tokens) on small CUDA tensors of every dtype, every
vector width, short heads (in registers) and long ones (read twice), and an unaligned row start.

    compute-sanitizer --tool memcheck python3 scripts/device/rotary_memcheck.py
"""

import torch

import dynamicrad

for dtype in (torch.bfloat16, torch.float16, torch.float32):
    for (b, n, h, d), offset in (((2, 37, 3, 128), 0), ((1, 5, 3, 6), 0), ((1, 9, 2, 64), 2)):
        flat = torch.randn(b * n * h * d + offset, device="cuda").to(dtype)
        x = flat[offset:].view(b, n, h, d)
        cos, sin = torch.randn(n, d, device="cuda"), torch.randn(n, d, device="cuda")
        dynamicrad.rotary(x, cos, sin)
        dynamicrad.norm_rotary(x, torch.ones(h * d, device="cuda", dtype=dtype), 1e-6, cos, sin)
        dynamicrad.norm_rotary(x, torch.ones(d, device="cuda", dtype=dtype), 1e-6, cos[: n - 2], sin[: n - 2],
                               "hunyuan_video", n - 2)
        # with the block means: HunyuanVideo's pooling kernel (head_dim 128) or pooling afterwards
        dynamicrad.norm_rotary_pooled(x, torch.ones(d, device="cuda", dtype=dtype), 1e-6, cos[: n - 2], sin[: n - 2],
                                      "hunyuan_video", n - 2, 8, (n + 7) // 8)
        dynamicrad.norm_rotary_pooled(x, torch.ones(h * d, device="cuda", dtype=dtype), 1e-6, cos, sin, "wan", -1,
                                      16, (n + 15) // 16)
    # a head of 1040 values (read twice), a long Wan row (70 x 128)
    x = torch.randn(1, 5, 2, 1040, device="cuda").to(dtype)
    cos, sin = torch.randn(5, 1040, device="cuda"), torch.randn(5, 1040, device="cuda")
    dynamicrad.norm_rotary(x, torch.ones(1040, device="cuda", dtype=dtype), 1e-6, cos, sin, "hunyuan_video")
    x = torch.randn(1, 5, 70, 128, device="cuda").to(dtype)
    cos, sin = torch.randn(5, 128, device="cuda"), torch.randn(5, 128, device="cuda")
    dynamicrad.norm_rotary(x, torch.ones(70 * 128, device="cuda", dtype=dtype), 1e-6, cos, sin)
torch.cuda.synchronize()
print("rotary_memcheck: done")
