"""Where one transformer call spends its GPU time: kernels recorded by torch.profiler, summed by
what they do (dense attention, DynamicRad's sparse attention and selection, GEMMs, the rest).

Used by bench_step.py --profile; the categories are matched on kernel names, DynamicRad's own
kernels first (they live in the ``dynamicrad`` namespace)."""

from __future__ import annotations

import re

import torch
from torch.profiler import ProfilerActivity, profile

# (category, pattern on the kernel name), first match wins.
CATEGORIES = (
    ("sparse attention (DynamicRad)", re.compile(r"dynamicrad.*(wgmma|mma_sync)_attention_kernel")),
    ("selection (DynamicRad)", re.compile(r"dynamicrad.*(pool|pool_scalar|adopt_pooled|select|compact)_kernel")),
    ("rotary (DynamicRad one pass)", re.compile(r"dynamicrad.*rotary_\w*kernel")),
    ("dense attention", re.compile(r"sdpa|flash|fmha|cudnn", re.IGNORECASE)),
    ("GEMM", re.compile(r"gemm|nvjet|xmma|cutlass|cublas", re.IGNORECASE)),
)
OTHER = "other (norms, modulation, rotary, elementwise, copies)"


def category(name: str) -> str:
    for label, pattern in CATEGORIES:
        if pattern.search(name):
            return label
    return OTHER


def profile_call(call) -> dict:
    """Runs ``call()`` once under torch.profiler. Returns {"total_ms": GPU kernel time, "categories":
    {category: ms}, "top": the 12 kernels with the most time, [(name, ms, count)]}."""
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    sums: dict = {}
    kernels: dict = {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        ms = event.time_range.elapsed_us() / 1e3
        label = category(event.name)
        sums[label] = sums.get(label, 0.0) + ms
        total, count = kernels.get(event.name, (0.0, 0))
        kernels[event.name] = (total + ms, count + 1)
    top = sorted(((name[:120], ms, n) for name, (ms, n) in kernels.items()), key=lambda x: -x[1])[:12]
    order = [label for label, _ in CATEGORIES] + [OTHER]
    return {
        "total_ms": sum(sums.values()),
        "categories": {label: sums[label] for label in order if label in sums},
        "top": top,
    }


def format_breakdown(label: str, b: dict) -> str:
    lines = [f"  {label}: {b['total_ms']:.1f} ms of GPU kernels"]
    for name, ms in b["categories"].items():
        lines.append(f"    {name:<58} {ms:9.1f} ms  {100 * ms / b['total_ms']:5.1f}%")
    lines.append("    kernels with the most time:")
    for name, ms, count in b["top"][:8]:
        lines.append(f"      {ms:9.1f} ms  {count:5d} x  {name[:90]}")
    return "\n".join(lines)
