"""``enable(pipe)`` / ``disable(pipe)`` for diffusers pipelines (or their transformers).

Supported: WanTransformer3DModel (WanPipeline, WanImageToVideoPipeline, Wan2.1 and Wan2.2,
including Wan2.2's second transformer) and HunyuanVideoTransformer3DModel (HunyuanVideoPipeline,
HunyuanVideoImageToVideoPipeline)."""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any

from ..config import DynamicRadConfig, check_selection_mode
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
    if hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
        raise TypeError(
            f"{name} of {type(model._orig_mod).__name__}: the transformer is already compiled; call "
            "dynamicrad.enable() before torch.compile (or on the uncompiled model, then compile it)"
        )
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
    if config.mode is None:
        check_selection_mode(config.selection, entry.selection.mode, f"regime {config.regime!r}'s default")
    engine = Engine(geometry, prior={**entry.prior, **config.prior}, threads=1)
    try:
        selection = dataclasses.replace(entry.selection, **config.selection)
        q = torch.zeros(1, geometry.tokens, 1, geometry.head_dim)
        engine.select(q, q, selection, 0)
    finally:
        engine.close()


def _reset_on_set_timesteps(target: Any, state: DynamicRadState) -> None:
    """A pipeline's scheduler sets its timesteps at the start of every generation: the step count
    starts over there (a rising timestep alone misses a generation that starts below the last one,
    e.g. video-to-video with strength < 1, or after an interrupted run). The wrapper keeps the
    method's signature, which diffusers inspects for ``timesteps`` / ``sigmas`` support."""
    scheduler = getattr(target, "scheduler", None)
    set_timesteps = getattr(scheduler, "set_timesteps", None)
    if not callable(set_timesteps):
        return
    own = vars(scheduler)
    had, previous = "set_timesteps" in own, own.get("set_timesteps")

    @functools.wraps(set_timesteps)
    def wrapper(*args, **kwargs):
        state.reset()
        return set_timesteps(*args, **kwargs)

    scheduler.set_timesteps = wrapper

    def undo():
        if had:
            scheduler.set_timesteps = previous
        elif vars(scheduler).get("set_timesteps") is wrapper:
            del scheduler.set_timesteps

    state.add_restore(undo)


def _forget_state(model: Any) -> None:
    if "dynamicrad_state" in vars(model):
        del model.dynamicrad_state


def enable(target: Any, config: DynamicRadConfig | None = None, **options: Any) -> DynamicRadState:
    """Switches a pipeline's (or transformer's) video self-attention to DynamicRad.

    ``target``: a WanPipeline / WanImageToVideoPipeline (Wan2.1 and Wan2.2, both of Wan2.2's
    transformers), a HunyuanVideoPipeline / HunyuanVideoImageToVideoPipeline, or one of their
    transformers (WanTransformer3DModel, HunyuanVideoTransformer3DModel) with the stock attention
    processors, not yet compiled. Options are those of ``DynamicRadConfig`` (regime, mode, lut,
    warmup_steps, dense_layers, dense_padding, dense_backend, refresh_interval, token_order, block_size,
    prior, selection, threads, ...), given either as a config or as keywords. Cross-attention stays
    stock.

    Returns the state (also kept as ``transformer.dynamicrad_state``); ``disable(target)`` restores
    the stock processors exactly. Steps are counted from the transformer's timesteps; given a
    pipeline, the count also starts over whenever its scheduler sets new timesteps (a new
    generation); given a transformer, call ``state.reset()`` before a generation that starts below
    the last one's timestep.

    One state serves one generation at a time: two threads running one enabled pipeline at once
    would mix their step counts and layouts.

    Raises TypeError for a target or option of the wrong kind, ValueError for an option out of its
    range (the message names the field and the allowed values)."""
    if config is not None and options:
        raise ValueError("pass either a DynamicRadConfig or keyword options, not both")
    if config is not None and not isinstance(config, DynamicRadConfig):
        raise TypeError(f"config: must be a DynamicRadConfig, got {type(config).__name__} "
                        "(or pass the options as keywords: enable(pipe, regime='high', ...))")
    if config is None:
        known = [f.name for f in dataclasses.fields(DynamicRadConfig)]
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(f"{key}: unknown option{hint}; allowed: {', '.join(known)}")
        config = DynamicRadConfig(**options)
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
    if config.dense_layers > min(counts):
        raise ValueError(f"dense_layers = {config.dense_layers}: the transformer has {min(counts)} self-attention "
                         f"layers; allowed range [0, {min(counts)}]")
    state = DynamicRadState(config, family, sum(counts))
    try:
        for model, first_layer in zip(models, [sum(counts[:i]) for i in range(len(models))]):
            install(model, state, first_layer)
            model.dynamicrad_state = state
            state.add_restore(lambda m=model: _forget_state(m))
        if target is not models[0]:
            _reset_on_set_timesteps(target, state)
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
