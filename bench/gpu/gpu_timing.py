"""GPU time of a callable, measured with CUDA events over back-to-back calls (so that the GPU never
waits for the host's per-call work, as inside a model's step)."""

from __future__ import annotations

import torch


def gpu_seconds(fn, calls: int) -> float:
    """Seconds a call of ``fn``, over ``calls`` back-to-back calls."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / calls
