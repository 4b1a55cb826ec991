"""What ``dynamicrad.enable`` takes: one validated options object (defaults in one place)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Optional

import torch

from .engine import MODES, REGIMES

TOKEN_ORDERS = ("raster", "tiled3d")
DENSE_PADDINGS = ("drop", "mask")
DENSE_BACKENDS = ("auto", "stock", "dynamicrad")
# Element types and block sizes the CUDA engine's kernels take (what "auto" needs to pick them, and
# what an enabled model on the GPU is checked against; src/cuda/cuda_engine.cu).
CUDA_DTYPES = (torch.bfloat16, torch.float16)
CUDA_BLOCK_SIZES = (64, 128)
_PRIOR_NUMBERS = ("gamma", "lambda", "theta_m", "theta_c")
_PRIOR_FLAGS = ("dense_adjacent", "first_frame_sink")
_PRIOR_KEYS = _PRIOR_NUMBERS + _PRIOR_FLAGS
# The selection fields each mode reads (select.h).
SELECTION_KEYS_OF_MODE = {"static-ratio": ("r_near", "r_far"), "dynamic-threshold": ("tau_near", "tau_far")}
_SELECTION_KEYS = ("r_near", "r_far", "tau_near", "tau_far")
_MAX_THREADS = 1024  # the engine's limit (options.threads)


@dataclass(frozen=True)
class DynamicRadConfig:
    """Options of a DynamicRad-enabled pipeline. Immutable once made (``dataclasses.replace`` makes a
    changed copy): an enabled pipeline's processors and state read the same options for its life.

    regime:            motion regime, picks the LUT row: "low", "mid" or "high" (the router will
                       choose it from the prompt later).
    mode:              "static-ratio" (speed first) or "dynamic-threshold" (quality first); None
                       takes the regime's default from the paper (static-ratio for low/mid motion).
    lut:               a LUT JSON file (``dynamicrad tune`` writes one); None: the built-in table.
    lut_geometry:      the preset the LUT's taus were tuned for, for a LUT without "calibrated_for"
                       (None: what the LUT says); the dynamic-threshold taus are converted to each
                       call's geometry.
    warmup_steps:      denoising steps that stay dense at the start (reference: 12 of 50).
    dense_layers:      self-attention layers, from the first, that stay dense (reference: 1).
    dense_padding:     how those dense layers and steps treat padded text tokens (HunyuanVideo's
                       prompt padding; Wan has none): "drop" leaves them out as the sparse layers
                       do, running the stock attention backend on the valid tokens without a mask
                       (the same result; the stock masked call is about 1.5x slower); "mask" calls
                       the stock attention with the stock padding mask (the stock bits).
    dense_backend:     what runs those dense layers and steps: "stock", the stock processor's attention
                       backend (cuDNN / SDPA; the stock bits), or "dynamicrad", the engine's own
                       kernels over every block pair (on an H100 about 6% faster than cuDNN at these
                       lengths, a warm-up step about 3% faster; within bf16 rounding of stock, not its
                       bits; padded prompt tokens are dropped, so it needs dense_padding="drop").
                       "auto" (the default) takes "dynamicrad" for CUDA tensors in bf16 / f16 with
                       dense_padding="drop" and block_size 64 or 128 (what the CUDA kernels take), and
                       "stock" otherwise (on the CPU, torch's attention is the faster dense path);
                       ``dense_backend_for`` says which, per call.
    refresh_interval:  build layouts every this many steps and reuse them in between (1: every
                       step). Reuse keeps one layout per layer and call on the GPU.
    token_order:       "raster" (the model's order) or "tiled3d" (applied once at model entry,
                       undone at exit, rotary embeddings permuted to match).
    block_size:        attention block (128: Hopper kernel; 64: portable kernel; CPU: 32/64/128).
    prior, selection:  overrides of LUT fields, e.g. ``prior={"gamma": 2.0}``,
                       ``selection={"r_near": 0.3}`` (kept as read-only copies). Selection fields
                       belong to one mode: r_near / r_far to static-ratio, tau_near / tau_far to
                       dynamic-threshold; ``enable()`` refuses those of the other mode.
    threads:           CPU engine threads (0: all).
    fused_rotary:      apply the rotary embedding in one pass (Wan: the same bits as the stock
                       processor's ten elementwise passes); False runs the stock arithmetic.
    fused_norm:        with fused_rotary: the Q/K RMSNorm (norm_q, norm_k) runs in that same pass
                       (Wan and HunyuanVideo). Its sum of squares is taken in double where the
                       stock norm sums in float, so a value can differ from stock's in its last
                       bit; False keeps the stock norm (Wan's one-pass rotary then gives the stock
                       bits exactly; HunyuanVideo then runs its stock norm and rotary).
    fused_pooling:     with fused_norm (HunyuanVideo): the block means that selection scores come
                       from are taken in the same pass as the norm and rotary, so selection does
                       not read Q and K once more; the layouts are the same bits either way. (Wan
                       has no such kernel yet: there it would only move the pooling pass.)
    keep_layouts:      keep every layer's last layout (on the GPU: about batch x heads x kept blocks
                       x 4 bytes a layer) so that ``state.save_mask_png`` can draw any layer; off,
                       only the layer that ran last can be drawn.
    """

    regime: str = "mid"
    mode: Optional[str] = None
    lut: Optional[str] = None
    lut_geometry: Optional[str] = None
    warmup_steps: int = 12
    dense_layers: int = 1
    dense_padding: str = "drop"
    dense_backend: str = "auto"
    refresh_interval: int = 1
    token_order: str = "raster"
    block_size: int = 128
    prior: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    threads: int = 0
    keep_layouts: bool = False
    fused_rotary: bool = True
    fused_norm: bool = True
    fused_pooling: bool = True

    def __post_init__(self):
        self.validate()
        # read-only copies: the caller's dicts may change later, the config may not
        for name in ("prior", "selection"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def validate(self) -> None:
        """Raises ValueError naming the field and its allowed values."""
        if self.regime not in REGIMES:
            raise ValueError(f"regime = {self.regime!r}: allowed values are {', '.join(REGIMES)}")
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"mode = {self.mode!r}: allowed values are {', '.join(MODES)}, or None")
        if self.lut is not None and not isinstance(self.lut, (str, os.PathLike)):
            raise TypeError(f"lut = {self.lut!r}: must be a path (str or os.PathLike) to a LUT JSON file, or None")
        if self.lut_geometry is not None and not isinstance(self.lut_geometry, str):
            raise TypeError(f"lut_geometry = {self.lut_geometry!r}: must be a preset name (str) or None")
        for name in ("warmup_steps", "dense_layers", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} = {value!r}: must be an integer >= 0")
        if self.threads > _MAX_THREADS:
            raise ValueError(f"threads = {self.threads}: allowed range [0, {_MAX_THREADS}] (0: all cores)")
        if not isinstance(self.refresh_interval, int) or isinstance(self.refresh_interval, bool) or self.refresh_interval < 1:
            raise ValueError(f"refresh_interval = {self.refresh_interval!r}: must be an integer >= 1")
        for name in ("keep_layouts", "fused_rotary", "fused_norm", "fused_pooling"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be True or False")
        if self.dense_padding not in DENSE_PADDINGS:
            raise ValueError(
                f"dense_padding = {self.dense_padding!r}: allowed values are {', '.join(DENSE_PADDINGS)}"
            )
        if self.dense_backend not in DENSE_BACKENDS:
            raise ValueError(
                f"dense_backend = {self.dense_backend!r}: allowed values are {', '.join(DENSE_BACKENDS)}"
            )
        if self.dense_backend == "dynamicrad" and self.dense_padding == "mask":
            raise ValueError(
                "dense_backend = 'dynamicrad' leaves padded prompt tokens out, which contradicts "
                "dense_padding = 'mask' (the stock masked call); use dense_padding = 'drop' or dense_backend = 'stock'"
            )
        if self.token_order not in TOKEN_ORDERS:
            raise ValueError(f"token_order = {self.token_order!r}: allowed values are {', '.join(TOKEN_ORDERS)}")
        if self.block_size not in (32, 64, 128):
            raise ValueError(f"block_size = {self.block_size!r}: allowed values are 32, 64, 128")
        for name, keys in (("prior", _PRIOR_KEYS), ("selection", _SELECTION_KEYS)):
            overrides = getattr(self, name)
            if not isinstance(overrides, Mapping):
                raise ValueError(f"{name}: must be a dict of overrides, got {type(overrides).__name__}")
            for key, value in overrides.items():
                if key not in keys:
                    raise ValueError(f"{name}.{key}: unknown field; allowed: {', '.join(keys)}")
                if key in _PRIOR_FLAGS and name == "prior":
                    if not isinstance(value, bool):
                        raise TypeError(f"{name}.{key} = {value!r}: must be True or False")
                elif isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"{name}.{key} = {value!r}: must be a number")
                elif not math.isfinite(value):
                    raise ValueError(f"{name}.{key} = {value!r}: must be finite")
        if self.mode is not None:
            check_selection_mode(self.selection, self.mode, "the mode option")

    def dense_backend_for(self, device_type: str, dtype: torch.dtype) -> str:
        """The backend ("stock" or "dynamicrad") of a dense layer or warm-up step whose Q, K, V are on
        a device of this type ("cuda", "cpu") with this dtype: ``dense_backend`` itself, unless it is
        "auto"."""
        if self.dense_backend != "auto":
            return self.dense_backend
        if (device_type == "cuda" and dtype in CUDA_DTYPES and self.block_size in CUDA_BLOCK_SIZES
                and self.dense_padding == "drop"):
            return "dynamicrad"
        return "stock"


def check_selection_mode(selection: Mapping, mode: str, source: str) -> None:
    """ValueError for a selection override that ``mode`` does not read (it would be ignored);
    ``source`` says where the mode came from."""
    for key in selection:
        if key not in SELECTION_KEYS_OF_MODE[mode]:
            other = next(m for m, keys in SELECTION_KEYS_OF_MODE.items() if key in keys)
            raise ValueError(
                f"selection.{key}: applies to mode {other} only, but the mode is {mode} ({source}); "
                f"pass mode={other!r} to use it"
            )
