"""Wan2.1 / Wan2.2 (WanTransformer3DModel): DynamicRad on every block's self-attention (attn1);
cross-attention (attn2) stays stock."""

from __future__ import annotations

from typing import Optional

import torch

from ..ops import norm_rotary, rotary
from ..state import DynamicRadState
from .common import (
    LayerProcessor, add_hook, argument, check_stock_processors, install_entry_hooks, install_processors, video_shape,
)
from .dispatch import layer_attention


# diffusers' Wan self-attention processors (WanAttnProcessor2_0 is the older name).
STOCK_PROCESSORS = ("WanAttnProcessor", "WanAttnProcessor2_0")


def self_attention_layers(model) -> list:
    return [block.attn1 for block in model.blocks]


def _projections(attn, hidden_states: torch.Tensor) -> tuple:
    if getattr(attn, "fused_projections", False):
        return attn.to_qkv(hidden_states).chunk(3, dim=-1)
    return attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)


def _rotate(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on interleaved pairs (x[2i], x[2i+1]) of [batch, tokens, heads, dim]."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out.type_as(x)


class WanSelfAttentionProcessor(LayerProcessor):
    """Stock projections, norms and rotary embedding; DynamicRad block-sparse attention in place of
    dense attention (the stock attention runs during warm-up steps and in dense layers, decided when
    ``dynamicrad::layer_attention`` runs)."""

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        rotary_emb: Optional[tuple] = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:  # not Wan's self-attention
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        query, key, value = _projections(attn, hidden_states)
        value = value.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None and self._one_pass(attn, query, rotary_emb):
            # norm_q / norm_k and the rotary embedding in one pass each
            freqs_cos, freqs_sin = rotary_emb
            query = norm_rotary(query.unflatten(2, (attn.heads, -1)), attn.norm_q.weight, _eps(attn.norm_q),
                                freqs_cos, freqs_sin)
            key = norm_rotary(key.unflatten(2, (attn.heads, -1)), attn.norm_k.weight, _eps(attn.norm_k),
                              freqs_cos, freqs_sin)
        else:
            query, key = attn.norm_q(query), attn.norm_k(key)
            query = query.unflatten(2, (attn.heads, -1))
            key = key.unflatten(2, (attn.heads, -1))
            if rotary_emb is not None:
                query, key = self._rotate(query, rotary_emb), self._rotate(key, rotary_emb)
        out = layer_attention(query, key, value, None, 0, self.dispatch)
        out = out.flatten(2, 3).type_as(query)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)

    def _rotate(self, x: torch.Tensor, rotary_emb: tuple) -> torch.Tensor:
        freqs_cos, freqs_sin = rotary_emb
        if self.fused_rotary and _fusable(x.shape, x, freqs_cos, freqs_sin):
            return rotary(x, freqs_cos, freqs_sin)  # same bits, one pass
        return _rotate(x, freqs_cos, freqs_sin)

    def _one_pass(self, attn, query: torch.Tensor, rotary_emb: tuple) -> bool:
        """Whether norm_q / norm_k and the rotary embedding can run as one pass (``norm_rotary``)."""
        if not (self.fused_rotary and self.fused_norm):
            return False
        shape = (query.shape[0], query.shape[1], attn.heads, query.shape[2] // attn.heads)
        return (_fusable(shape, query, *rotary_emb) and _fusable_norm(attn.norm_q, query)
                and _fusable_norm(attn.norm_k, query))


def _fusable(shape: tuple, x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> bool:
    """The one-pass rotary kernel covers Wan's own tables: float32 [1, tokens, 1, head_dim]."""
    table = (1, shape[1], 1, shape[3])
    return (x.dtype in (torch.float32, torch.float16, torch.bfloat16) and freqs_cos.dtype == torch.float32
            and freqs_sin.dtype == torch.float32 and tuple(freqs_cos.shape) == table
            and tuple(freqs_sin.shape) == table and freqs_cos.device == x.device)


def _fusable_norm(norm, query: torch.Tensor) -> bool:
    """Wan's qk_norm "rms_norm_across_heads": a torch.nn.RMSNorm over all heads, with a weight on
    Q's device. (A weight elsewhere, e.g. on "meta" under accelerate's CPU offload, which moves it in
    only when the module runs: the stock path calls the module, so its hooks run.)"""
    return (type(norm) is torch.nn.RMSNorm and tuple(norm.normalized_shape) == (query.shape[2],)
            and norm.weight is not None and norm.weight.is_floating_point() and norm.weight.device == query.device)


def _eps(norm: torch.nn.RMSNorm) -> float:
    """torch.nn.RMSNorm's eps; None means the float32 machine epsilon (F.rms_norm's default)."""
    return float(norm.eps) if norm.eps is not None else float(torch.finfo(torch.float32).eps)


def install(model, state: DynamicRadState, first_layer: int = 0) -> None:
    patch = tuple(model.config.patch_size)
    layers = self_attention_layers(model)
    check_stock_processors(layers, [f"blocks.{i}.attn1" for i in range(len(layers))], STOCK_PROCESSORS)

    def on_entry(args, kwargs):
        latents = argument(args, kwargs, 0, "hidden_states")
        timestep = argument(args, kwargs, 1, "timestep")
        video = video_shape(latents, patch)
        state.check_device(latents.device, model.config.attention_head_dim)
        if state.config.token_order != "raster" and torch.is_tensor(timestep) and timestep.dim() == 2:
            raise ValueError(
                "token_order = 'tiled3d': per-token timesteps (Wan2.2 TI2V) are not supported in the tiled order; "
                "use token_order='raster'"
            )
        state.begin_call(timestep, video)
        dispatch.reset()

    def sparse(layer, q, k, v, text_tokens, pooled):
        return state.attention(layer, q, k, v, pooled=pooled)

    def engine_dense(q, k, v, text_tokens):
        return state.dense_attention(q, k, v)

    dispatch = install_processors(layers, WanSelfAttentionProcessor, state, first_layer, sparse, engine_dense=engine_dense)
    install_entry_hooks(model, state, on_entry)
    if state.config.token_order != "raster":
        _install_token_order(model, state)


def _install_token_order(model, state: DynamicRadState) -> None:
    """3D-tiled order: permute once after patch embedding (before the first block) and the rotary
    tables to match, undo after the last block; the blocks in between see tiled tokens."""

    def rope_out(module, args, output):
        perm = state.permutation(output[0].device)[0]
        return tuple(f.index_select(1, perm) for f in output)

    def first_block_in(module, args, kwargs):
        perm = state.permutation(args[0].device)[0]
        return (args[0].index_select(1, perm),) + tuple(args[1:]), kwargs

    def last_block_out(module, args, kwargs, output):
        inverse = state.permutation(output.device)[1]
        return output.index_select(1, inverse)

    add_hook(state, model.rope.register_forward_hook(rope_out))
    add_hook(state, model.blocks[0].register_forward_pre_hook(first_block_in, with_kwargs=True))
    add_hook(state, model.blocks[-1].register_forward_hook(last_block_out, with_kwargs=True))
