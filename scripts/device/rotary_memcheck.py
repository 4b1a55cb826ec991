"""compute-sanitizer target: the one-pass rotary and norm+rotary kernels on small CUDA tensors of
every dtype, both vector widths (16-byte rows and pairs) and an unaligned row start.

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
torch.cuda.synchronize()
print("rotary_memcheck: done")
