"""Shared fixtures for DynamicRad's CPU test suite: tiny Wan / HunyuanVideo transformers with fixed
seeds, their inputs, and small helpers (relative error, hook snapshots).

Against the installed package (what scripts/test.sh does after `pip install .`):
    python3 -m pytest tests/python -q
Against this checkout's sources without installing (the C library built into build-py/):
    python3 -m pytest tests/python -q      # uses python/ and build-py/libdynamicrad_c.so
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("dynamicrad") is None:  # not installed: this checkout's sources and library
    sys.path.insert(0, str(ROOT / "python"))
    os.environ.setdefault("DYNAMICRAD_LIBRARY", str(ROOT / "build-py" / "libdynamicrad_c.so"))

import torch  # noqa: E402

import dynamicrad  # noqa: E402

# The models are tiny: one torch thread is faster than several, and it keeps the timing stable on a
# busy machine (OpenMP threads waiting on each other made small matmuls 100x slower here).
torch.set_num_threads(1)

# Every block pair kept: a huge gamma with zero thresholds makes the radial prior dense, and keep
# ratios of 1 keep every candidate, so sparse attention equals dense attention.
DENSITY_ONE = dict(
    warmup_steps=0,
    dense_layers=0,
    block_size=32,
    prior={"gamma": 16.0, "theta_m": 0.0, "theta_c": 0.0},
    selection={"r_near": 1.0, "r_far": 1.0},
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def hook_snapshot(model: torch.nn.Module) -> dict:
    """Every module's hook ids (and the hook objects), to compare before enable / after disable."""
    snap = {}
    for name, module in model.named_modules():
        for attr in _HOOK_DICTS:
            d = getattr(module, attr, None)
            if d:
                snap[(name, attr)] = dict(d)
    return snap


def processor_snapshot(model: torch.nn.Module) -> dict:
    return {name: m.processor for name, m in model.named_modules() if hasattr(m, "processor")}


@pytest.fixture(scope="session", autouse=True)
def _library_loaded():
    """Fails early (not per test) when the C library cannot be loaded."""
    dynamicrad.version()


@pytest.fixture
def helpers():
    class H:
        DENSITY_ONE = DENSITY_ONE
        rel_err = staticmethod(rel_err)
        hook_snapshot = staticmethod(hook_snapshot)
        processor_snapshot = staticmethod(processor_snapshot)

    return H


# ---- Wan --------------------------------------------------------------------------------------
WAN_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64, in_channels=4, out_channels=4,
    text_dim=32, freq_dim=32, ffn_dim=64, num_layers=3, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
)


def _make_wan(seed: int = 0, **overrides):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(**{**WAN_CONFIG, **overrides}).eval()


@pytest.fixture
def make_wan():
    """make_wan(seed=0, **config overrides) -> a tiny random WanTransformer3DModel (fp32, eval)."""
    made = []

    def make(seed: int = 0, **overrides):
        m = _make_wan(seed, **overrides)
        made.append(m)
        return m

    yield make
    for m in made:  # a failed test must not leave engines behind
        if getattr(m, "dynamicrad_state", None) is not None:
            dynamicrad.disable(m)


@pytest.fixture
def wan(make_wan):
    return make_wan()


def _wan_inputs(batch: int = 1, seed: int = 1, frames: int = 5, height: int = 16, width: int = 16,
                timestep: float = 500.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, 4, frames, height, width, generator=g),
        timestep=torch.full((batch,), timestep),
        encoder_hidden_states=torch.randn(batch, 8, 32, generator=g),
    )


@pytest.fixture
def wan_inputs():
    """wan_inputs(batch=1, seed=1, frames=5, height=16, width=16, timestep=500.) -> forward kwargs
    (5 x 8 x 8 = 320 video tokens: 10 blocks of 32)."""
    return _wan_inputs


def run_model(model, kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(**kwargs).sample


@pytest.fixture
def run():
    return run_model


# ---- HunyuanVideo -----------------------------------------------------------------------------
HUNYUAN_CONFIG = dict(
    in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=32, num_layers=2,
    num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1,
    text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(8, 12, 12),
)


@pytest.fixture
def make_hunyuan():
    from diffusers import HunyuanVideoTransformer3DModel

    made = []

    def make(seed: int = 0, **overrides):
        torch.manual_seed(seed)
        m = HunyuanVideoTransformer3DModel(**{**HUNYUAN_CONFIG, **overrides}).eval()
        made.append(m)
        return m

    yield make
    for m in made:
        if getattr(m, "dynamicrad_state", None) is not None:
            dynamicrad.disable(m)


@pytest.fixture
def hunyuan_inputs():
    """hunyuan_inputs(batch=2, seed=1, lengths=(12, 7)) -> forward kwargs; 5 x 8 x 8 video tokens and
    12 text tokens of which lengths[b] are valid for batch element b."""

    def make(batch: int = 2, seed: int = 1, lengths=(12, 7), timestep: float = 500.0) -> dict:
        g = torch.Generator().manual_seed(seed)
        mask = torch.zeros(batch, 12, dtype=torch.long)
        for b in range(batch):
            mask[b, : lengths[b % len(lengths)]] = 1
        return dict(
            hidden_states=torch.randn(batch, 4, 5, 16, 16, generator=g),
            timestep=torch.full((batch,), timestep),
            encoder_hidden_states=torch.randn(batch, 12, 16, generator=g),
            encoder_attention_mask=mask,
            pooled_projections=torch.randn(batch, 8, generator=g),
            guidance=torch.full((batch,), 6000.0),
        )

    return make
