"""Pieces both model integrations use: the transformer entry hook and processor bookkeeping."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from ..state import DynamicRadState, VideoShape
from .dispatch import DenseAttention, EngineDenseAttention, LayerDispatch, SparseAttention


class LayerProcessor:
    """What every DynamicRad attention processor knows: its transformer's dispatch (which decides at
    run time between the stock attention and DynamicRad), where its layer sits, and the stock
    processor that disable() restores.

    ``__call__`` must not branch on run-time state (step, layer): torch.compile would bake it in."""

    def __init__(self, dispatch: LayerDispatch, layer: int, layer_in_model: int):
        self.dispatch = dispatch
        self.layer = layer  # across the pipeline's transformers: slots and reports
        self.layer_in_model = layer_in_model  # inside this transformer: the dense-layer rule
        self.fused_rotary = dispatch.state.config.fused_rotary
        self.fused_norm = dispatch.state.config.fused_norm
        self.fused_pooling = dispatch.state.config.fused_pooling
        self.block_size = dispatch.state.config.block_size

    @property
    def stock(self):
        """The stock processor this one replaced."""
        return self.dispatch.stock[self.layer_in_model]

    # diffusers' set_attention_backend() / reset_attention_backend() set this attribute on every
    # processor that has one: it reaches the stock processor, whose attention backend the dense
    # layers and warm-up steps run.
    @property
    def _attention_backend(self):
        return getattr(self.stock, "_attention_backend", None)

    @_attention_backend.setter
    def _attention_backend(self, backend):
        self.stock._attention_backend = backend


def argument(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    """A forward argument given by position or keyword (diffusers pipelines use keywords)."""
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


def video_shape(latents: torch.Tensor, patch: tuple) -> VideoShape:
    """Latent tokens after patching; ValueError when the latents do not divide by the patch."""
    if latents is None or latents.dim() != 5:
        shape = None if latents is None else tuple(latents.shape)
        raise ValueError(f"hidden_states: expected latents [batch, channels, frames, height, width], got {shape}")
    _, _, f, h, w = latents.shape
    pt, ph, pw = patch
    if f % pt or h % ph or w % pw:
        raise ValueError(
            f"hidden_states: latent frames x height x width {f} x {h} x {w} do not divide by the patch "
            f"{pt} x {ph} x {pw}: the token geometry would not match the model's"
        )
    return VideoShape(f // pt, h // ph, w // pw)


def check_stock_processors(layers: list, names: tuple, stock: tuple) -> None:
    """TypeError unless every layer runs one of the ``stock`` processor classes (by name): DynamicRad
    replaces the stock attention arithmetic, and another processor's behaviour would silently go."""
    for name, attn in zip(names, layers):
        kind = type(attn.processor).__name__
        if kind not in stock:
            raise TypeError(
                f"{name}: its attention processor is {kind}, not the stock {' / '.join(stock)}; DynamicRad "
                "replaces the stock processor only (put the stock one back before enable())"
            )


def install_processors(
    layers: list, processor_class: type, state: DynamicRadState, first_layer: int, sparse: SparseAttention,
    dense: Optional[DenseAttention] = None, engine_dense: Optional[EngineDenseAttention] = None,
) -> LayerDispatch:
    """Puts a `processor_class` on every attention module of `layers` (one transformer's, numbered
    from `first_layer` across the pipeline), registers the stock processors' return, and returns the
    transformer's dispatch (its ``reset()`` belongs at model entry). `dense`, `engine_dense`: see
    LayerDispatch."""
    dispatch = LayerDispatch(state, [attn.processor for attn in layers], first_layer, sparse, dense, engine_dense)
    for index, (attn, stock) in enumerate(zip(layers, dispatch.stock)):
        attn.set_processor(processor_class(dispatch, first_layer + index, index))
        state.add_restore(lambda attn=attn, stock=stock: attn.set_processor(stock))
    return dispatch


def add_hook(state: DynamicRadState, handle: Any) -> None:
    state.add_restore(handle.remove)


def install_entry_hooks(
    model: torch.nn.Module,
    state: DynamicRadState,
    on_entry: Callable[[tuple, dict], None],
) -> None:
    """Runs ``on_entry(args, kwargs)`` before every transformer call and clears the call's geometry
    after it (also when the call raises)."""

    @torch.compiler.disable  # reads the timestep on the host and resets the layer dispatch: eager
    def pre(module, args, kwargs):
        on_entry(args, kwargs)

    def post(module, args, kwargs, output):
        state.end_call()

    add_hook(state, model.register_forward_pre_hook(pre, with_kwargs=True))
    add_hook(state, model.register_forward_hook(post, with_kwargs=True, always_call=True))
