"""``enable(pipe)`` / ``disable(pipe)`` for diffusers pipelines (or their transformers).

Supported: WanTransformer3DModel (WanPipeline, WanImageToVideoPipeline, Wan2.1 and Wan2.2,
including Wan2.2's second transformer) and HunyuanVideoTransformer3DModel (HunyuanVideoPipeline,
HunyuanVideoImageToVideoPipeline)."""

from __future__ import annotations

from typing import Any

from ..config import DynamicRadConfig
from ..state import DynamicRadState

_SUPPORTED = ("WanTransformer3DModel", "HunyuanVideoTransformer3DModel")


def _transformers(target: Any) -> list:
    """The transformers of a pipeline (Wan2.2 has two), or the model itself."""
    if hasattr(target, "transformer"):
        models = [getattr(target, name, None) for name in ("transformer", "transformer_2")]
        models = [m for m in models if m is not None]
        if not models:
            raise TypeError(f"{type(target).__name__}: the pipeline has no transformer loaded")
        return models
    return [target]


def _family(model: Any) -> str:
    name = type(model).__name__
    if name == "WanTransformer3DModel":
        return "wan"
    if name == "HunyuanVideoTransformer3DModel":
        return "hunyuan_video"
    raise TypeError(
        f"{name}: DynamicRad does not support this model; supported transformers: {', '.join(_SUPPORTED)} "
        "(WanPipeline, WanImageToVideoPipeline, HunyuanVideoPipeline, HunyuanVideoImageToVideoPipeline)"
    )


def _check_options(config: DynamicRadConfig) -> None:
    """Everything the first sparse step would find wrong, found now (not after the warm-up steps):
    the LUT file and row, lut_geometry, and the prior / selection overrides, by one selection on a
    tiny geometry with the CPU engine."""
    import dataclasses

    import torch

    from ..engine import Engine, Geometry, lut_entry

    geometry = Geometry(frames=2, height=4, width=8, heads=1, head_dim=8, block_size=config.block_size)
    if config.lut_geometry is not None:
        try:
            Geometry.preset(config.lut_geometry)
        except ValueError as e:
            raise ValueError(f"lut_geometry = {config.lut_geometry!r}: {e}") from None
    entry = lut_entry(config.regime, config.mode, config.lut, geometry, config.lut_geometry)
    engine = Engine(geometry, prior={**entry.prior, **config.prior}, threads=1)
    try:
        selection = dataclasses.replace(entry.selection, **config.selection)
        q = torch.zeros(1, geometry.tokens, 1, geometry.head_dim)
        engine.select(q, q, selection, 0)
    finally:
        engine.close()


def enable(target: Any, config: DynamicRadConfig | None = None, **options: Any) -> DynamicRadState:
    """Switches a pipeline's (or transformer's) video self-attention to DynamicRad.

    Options are those of ``DynamicRadConfig`` (regime, mode, lut, warmup_steps, dense_layers,
    dense_padding, refresh_interval, token_order, block_size, prior, selection, threads, ...), given
    either as a config or as keywords. Cross-attention stays stock. Returns the state (also kept as
    ``transformer.dynamicrad_state``); ``disable(target)`` restores the stock processors exactly."""
    if config is not None and options:
        raise ValueError("pass either a DynamicRadConfig or keyword options, not both")
    config = config if config is not None else DynamicRadConfig(**options)
    config.validate()
    models = _transformers(target)
    families = {_family(m) for m in models}
    for model in models:
        if getattr(model, "dynamicrad_state", None) is not None:
            raise ValueError(f"{type(model).__name__}: DynamicRad is already enabled; call disable() first")
    family = families.pop()
    if family == "wan":
        from .wan import install, self_attention_layers
    else:
        from .hunyuan_video import install, self_attention_layers
    _check_options(config)
    counts = [len(self_attention_layers(m)) for m in models]
    state = DynamicRadState(config, family, sum(counts))
    try:
        for model, first_layer in zip(models, [sum(counts[:i]) for i in range(len(models))]):
            install(model, state, first_layer)
            model.dynamicrad_state = state
            state.add_restore(lambda m=model: setattr(m, "dynamicrad_state", None))
    except Exception:
        state.restore()
        raise
    return state


def disable(target: Any) -> None:
    """Restores the stock attention processors and removes DynamicRad's hooks."""
    models = _transformers(target)
    states = {id(s): s for s in (getattr(m, "dynamicrad_state", None) for m in models) if s is not None}
    if not states:
        raise ValueError(f"{type(target).__name__}: DynamicRad is not enabled")
    for state in states.values():
        state.restore()
