"""HunyuanVideo (HunyuanVideoTransformer3DModel): DynamicRad on the joint video+text attention of
the dual-stream and single-stream blocks (the text token refiner stays stock).

The sequence is [video tokens, text tokens]; padded text tokens (``encoder_attention_mask``) are
left out as keys exactly as the stock mask does. Batch elements with different prompt lengths run
as separate groups; the outputs of padded text rows are zero (they only ever feed padded rows,
which no valid token attends to). Dense layers and warm-up steps leave them out the same way
(``dense_padding="drop"``, the default) or call the stock attention with its mask ("mask")."""

from __future__ import annotations

from typing import Optional

import torch
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.normalization import RMSNorm

from ..ops import norm_rotary, norm_rotary_pooled
from ..state import DynamicRadState
from .common import (
    LayerProcessor, add_hook, argument, check_stock_processors, install_entry_hooks, install_processors, video_shape,
)
from .dispatch import layer_attention


STOCK_PROCESSORS = ("HunyuanVideoAttnProcessor2_0",)


def self_attention_layers(model) -> list:
    return [b.attn for b in model.transformer_blocks] + [b.attn for b in model.single_transformer_blocks]


def _layer_names(model) -> list:
    return ([f"transformer_blocks.{i}.attn" for i in range(len(model.transformer_blocks))]
            + [f"single_transformer_blocks.{i}.attn" for i in range(len(model.single_transformer_blocks))])


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.unflatten(2, (heads, -1))


class HunyuanVideoAttentionProcessor(LayerProcessor):
    """Stock projections; norm_q / norm_k and the rotary embedding in one pass (``norm_rotary``, or
    the stock arithmetic); DynamicRad block-sparse joint attention (the stock attention, with its
    padding mask or on the valid tokens, see ``dense_padding``, in warm-up steps and dense layers)."""

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        image_rotary_emb: Optional[tuple] = None,
    ):
        single_stream = attn.add_q_proj is None
        text = 0 if encoder_hidden_states is None else encoder_hidden_states.shape[1]
        joint = torch.cat([hidden_states, encoder_hidden_states], dim=1) if single_stream and text else hidden_states

        query = _heads(attn.to_q(joint), attn.heads)
        key = _heads(attn.to_k(joint), attn.heads)
        value = _heads(attn.to_v(joint), attn.heads)
        video = query.shape[1] - text if single_stream else query.shape[1]  # tokens that get the rotary
        pooled = None
        if image_rotary_emb is not None and self._one_pass(attn, query, image_rotary_emb, video):
            # The blocks made of video tokens alone are the same in the joint sequence selection sees.
            blocks = (video // self.block_size if text else -(-video // self.block_size)) if self.fused_pooling else 0
            query, pooled_q = _norm_rotary_pass(query, attn.norm_q, image_rotary_emb, video, self.block_size, blocks)
            key, pooled_k = _norm_rotary_pass(key, attn.norm_k, image_rotary_emb, video, self.block_size, blocks)
            pooled = None if pooled_q is None else (pooled_q, pooled_k, self.block_size)
        else:  # the stock arithmetic (inline: a helper's arguments would keep the projections alive)
            if attn.norm_q is not None:
                query = attn.norm_q(query)
            if attn.norm_k is not None:
                key = attn.norm_k(key)
            if image_rotary_emb is not None and video < query.shape[1]:
                query = torch.cat([apply_rotary_emb(query[:, :video], image_rotary_emb, sequence_dim=1),
                                   query[:, video:]], 1)
                key = torch.cat([apply_rotary_emb(key[:, :video], image_rotary_emb, sequence_dim=1), key[:, video:]], 1)
            elif image_rotary_emb is not None:
                query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
                key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        if not single_stream and text:
            text_query = _heads(attn.add_q_proj(encoder_hidden_states), attn.heads)
            text_key = _heads(attn.add_k_proj(encoder_hidden_states), attn.heads)
            text_value = _heads(attn.add_v_proj(encoder_hidden_states), attn.heads)
            if attn.norm_added_q is not None:
                text_query = attn.norm_added_q(text_query)
            if attn.norm_added_k is not None:
                text_key = attn.norm_added_k(text_key)
            query = torch.cat([query, text_query], dim=1)
            key = torch.cat([key, text_key], dim=1)
            value = torch.cat([value, text_value], dim=1)

        out = layer_attention(query, key, value, attention_mask, text, self.dispatch, pooled)
        out = out.flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return out, None
        out, text_out = out[:, :-text], out[:, -text:]
        if getattr(attn, "to_out", None) is not None:
            out = attn.to_out[1](attn.to_out[0](out))
        if getattr(attn, "to_add_out", None) is not None:
            text_out = attn.to_add_out(text_out)
        return out, text_out

    def _one_pass(self, attn, query: torch.Tensor, rotary_emb: tuple, video: int) -> bool:
        """Whether norm_q / norm_k and the rotary embedding can run as one pass (``norm_rotary``):
        HunyuanVideo's own norms and float32 [video tokens, head_dim] tables."""
        if not (self.fused_rotary and self.fused_norm):
            return False
        table = (video, query.shape[3])
        return (query.dtype in (torch.float32, torch.float16, torch.bfloat16)
                and _fusable_norm(attn.norm_q, query) and _fusable_norm(attn.norm_k, query)
                and len(rotary_emb) == 2
                and all(t.dtype == torch.float32 and tuple(t.shape) == table and t.device == query.device
                        for t in rotary_emb))


def _norm_rotary_pass(x: torch.Tensor, norm, rotary_emb: tuple, video: int, block: int, blocks: int) -> tuple:
    """HunyuanVideo's norm and rotary embedding of x in one pass; with ``blocks`` > 0 also the means of
    its first ``blocks`` blocks (``norm_rotary_pooled``). Returns (out, means or None)."""
    cos, sin = rotary_emb
    if blocks > 0:
        return norm_rotary_pooled(x, norm.weight, norm.eps, cos, sin, "hunyuan_video", video, block, blocks)
    return norm_rotary(x, norm.weight, norm.eps, cos, sin, "hunyuan_video", video), None


def _fusable_norm(norm, query: torch.Tensor) -> bool:
    """HunyuanVideo's qk_norm "rms_norm": diffusers' RMSNorm over each head, weighted, in Q's dtype, on
    Q's device (a weight elsewhere, e.g. offloaded to "meta": the stock path calls the module, so the
    offload hooks run)."""
    return (type(norm) is RMSNorm and norm.weight is not None and getattr(norm, "bias", None) is None
            and norm.weight.dtype == query.dtype and tuple(norm.weight.shape) == (query.shape[3],)
            and norm.weight.device == query.device)


def grouped_attention(state: DynamicRadState, attend, query, key, value, text: int, pooled=None) -> torch.Tensor:
    """Joint attention with the padded text tokens left out: ``attend(q, k, v, n, pooled)`` runs on
    batch elements that share the valid text length n, on their video + n valid tokens; ``pooled``
    (None or (pooled_q, pooled_k, pool_block): the block means of the video blocks of q and k) follows
    the batch elements."""
    batch = query.shape[0]
    lengths = state.text_lengths if state.text_lengths is not None else [text] * batch
    if len(lengths) != batch or any(not 0 <= n <= text for n in lengths):
        raise ValueError(
            f"encoder_attention_mask: valid text lengths {lengths} do not fit a batch of {batch} "
            f"with {text} text tokens"
        )
    video = query.shape[1] - text
    if len(set(lengths)) == 1:
        # One prompt length: the valid tokens are a prefix of the sequence, so a slice holds them (no
        # copy at batch 1, none at all without padding), and the padded text rows get zeros.
        n = lengths[0]
        part = attend(query[:, : video + n], key[:, : video + n], value[:, : video + n], n, pooled)
        return part if n == text else torch.nn.functional.pad(part, (0, 0, 0, 0, 0, text - n))
    out = torch.zeros_like(query)
    for n in sorted(set(lengths)):
        rows = [b for b in range(batch) if lengths[b] == n]
        index = torch.tensor(rows, device=query.device)
        part = [t.index_select(0, index)[:, : video + n].contiguous() for t in (query, key, value)]
        part_pooled = None if pooled is None else (*(t.index_select(0, index) for t in pooled[:2]), pooled[2])
        out[index, : video + n] = attend(*part, n, part_pooled)
    return out


def install(model, state: DynamicRadState, first_layer: int = 0) -> None:
    config = model.config
    patch = (config.patch_size_t, config.patch_size, config.patch_size)
    layers = self_attention_layers(model)
    check_stock_processors(layers, _layer_names(model), STOCK_PROCESSORS)
    if state.config.token_order != "raster" and getattr(config, "image_condition_type", None) == "token_replace":
        raise ValueError(
            "token_order = 'tiled3d' is not supported with image_condition_type='token_replace' "
            "(HunyuanVideo I2V replaces the first frame's tokens by position); use token_order='raster'"
        )

    def on_entry(args, kwargs):
        latents = argument(args, kwargs, 0, "hidden_states")
        timestep = argument(args, kwargs, 1, "timestep")
        mask = argument(args, kwargs, 3, "encoder_attention_mask")
        video = video_shape(latents, patch)
        state.check_device(latents.device, config.attention_head_dim)
        lengths = None if mask is None else [int(n) for n in mask.sum(dim=1).tolist()]
        state.begin_call(timestep, video, lengths)
        dispatch.reset()

    def sparse(layer, q, k, v, text_tokens, pooled):
        return grouped_attention(
            state, lambda q, k, v, n, pooled: state.attention(layer, q, k, v, n, pooled), q, k, v, text_tokens, pooled
        )

    def dense(stock_attention, q, k, v, text_tokens):
        return grouped_attention(state, lambda q, k, v, n, pooled: stock_attention(q, k, v), q, k, v, text_tokens)

    def engine_dense(q, k, v, text_tokens):
        return grouped_attention(
            state, lambda q, k, v, n, pooled: state.dense_attention(q, k, v, n), q, k, v, text_tokens
        )

    dispatch = install_processors(layers, HunyuanVideoAttentionProcessor, state, first_layer, sparse, dense, engine_dense)
    install_entry_hooks(model, state, on_entry)
    if state.config.token_order != "raster":
        _install_token_order(model, state)


def _install_token_order(model, state: DynamicRadState) -> None:
    """3D-tiled order: permute the patch-embedded tokens and the rotary tables once, undo before the
    output norm. Text tokens come after the video and never move."""

    def rope_out(module, args, output):
        perm = state.permutation(output[0].device)[0]
        return tuple(f.index_select(0, perm) for f in output)

    def embed_out(module, args, output):
        perm = state.permutation(output.device)[0]
        return output.index_select(1, perm)

    def norm_in(module, args, kwargs):
        inverse = state.permutation(args[0].device)[1]
        return (args[0].index_select(1, inverse),) + tuple(args[1:]), kwargs

    add_hook(state, model.rope.register_forward_hook(rope_out))
    add_hook(state, model.x_embedder.register_forward_hook(embed_out))
    add_hook(state, model.norm_out.register_forward_pre_hook(norm_in, with_kwargs=True))
