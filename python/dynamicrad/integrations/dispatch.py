"""Run-time dispatch of a transformer's self-attention layers: ``torch.ops.dynamicrad.layer_attention``.

Which layer is running, whether it runs dense (warm-up step, dense layer) or sparse, and which layout
slot it uses all change from call to call. If the processors decided that in Python, ``torch.compile``
would bake the answers into the graph and recompile at every step and for every block. Instead the
processors hand their Q, K, V to one operator together with the transformer's ``LayerDispatch``,
and the decision is taken when the operator runs:
- the dispatch counts the self-attention calls of the current transformer call (reset at model
  entry), which gives the layer;
- dense layers and warm-up steps run on DynamicRad's kernels over every block pair (the
  integration's ``engine_dense``) where ``DynamicRadConfig.dense_backend_for`` says "dynamicrad" (by
  default: CUDA tensors in bf16 / f16); otherwise they run the stock processor's attention (diffusers'
  ``dispatch_attention_fn`` with that processor's backend), which gives the stock bits; where the
  call carries a padding mask (HunyuanVideo's prompt padding) and ``dense_padding`` is "drop", the
  integration's ``dense`` runs that attention on the valid tokens without the mask instead;
- sparse ones run DynamicRad (``DynamicRadState.attention``).

The dispatch travels through compiled graphs as an opaque reference object (torch >= 2.10), so
``compile_repeated_blocks(fullgraph=True)`` compiles a block once for all layers and all steps. On
an older torch the same code runs as a plain function, excluded from compilation.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

try:  # torch >= 2.10: Python objects as custom-operator arguments
    from torch._library.opaque_object import register_opaque_type
    from torch._opaque_base import OpaqueBase
except ImportError:  # pragma: no cover - older torch
    OpaqueBase, register_opaque_type = object, None

# sparse(layer, q, k, v, text_tokens, pooled): pooled is None or (pooled_q, pooled_k, pool_block), the
# block means of the first blocks already computed (ops.norm_rotary_pooled) and their block size.
SparseAttention = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, int, Optional[tuple]], torch.Tensor]
# dense(stock_attention, q, k, v, text_tokens): the dense attention of a padded call, where
# stock_attention(q, k, v) is the stock processor's attention without a mask.
DenseAttention = Callable[[Callable, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
# engine_dense(q, k, v, text_tokens): the dense attention of a call on DynamicRad's kernels
# (where dense_backend resolves to "dynamicrad").
EngineDenseAttention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


class LayerDispatch(OpaqueBase):
    """The self-attention layers of one transformer, as the operator sees them.

    ``stock``: the stock processor of every layer (in call order); ``first_layer``: the number of the
    first one across the pipeline's transformers; ``sparse(layer, q, k, v, text_tokens, pooled)``:
    DynamicRad attention of a layer; ``dense``: the dense attention of a call with a padding mask when
    ``dense_padding`` is "drop" (None: the stock call with its mask); ``engine_dense(q, k, v,
    text_tokens)``: dense attention on DynamicRad's kernels, where ``dense_backend`` resolves to
    "dynamicrad"."""

    def __init__(self, state, stock: list, first_layer: int, sparse: SparseAttention,
                 dense: Optional[DenseAttention] = None, engine_dense: Optional[EngineDenseAttention] = None):
        self.state = state
        self.stock = stock
        self.first_layer = first_layer
        self.sparse = sparse
        self.dense = dense
        self.engine_dense = engine_dense
        self.cursor = 0

    def __deepcopy__(self, memo):
        # A handle on live state (engines, the step counter): torch.compile's tracing copies opaque
        # objects, and every copy must act on this one.
        return self

    def __reduce__(self):
        # Inductor writes a pickle of every opaque graph input into its generated module (for its
        # benchmark harness). Live engines cannot travel that way; the pickle restores to an error.
        return (_not_restorable, ())

    def reset(self) -> None:
        """At transformer entry: the next self-attention call is the first layer's."""
        self.cursor = 0

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_mask: Optional[torch.Tensor],
                 text_tokens: int, pooled_q: Optional[torch.Tensor] = None,
                 pooled_k: Optional[torch.Tensor] = None, pool_block: int = 0) -> torch.Tensor:
        state = self.state
        state.check_in_call()
        index = self.cursor
        if index >= len(self.stock):
            raise ValueError(
                f"self-attention call {index + 1} in one transformer call, but the transformer has "
                f"{len(self.stock)} layers (call the transformer, not its blocks)"
            )
        self.cursor = index + 1
        layer = self.first_layer + index
        if state.is_dense(index):
            state.record_dense(layer)
            backend = state.config.dense_backend_for(q.device.type, q.dtype)
            if backend == "dynamicrad" and self.engine_dense is not None:
                return self.engine_dense(q, k, v, text_tokens)
            stock = self.stock[index]
            if attention_mask is not None and self.dense is not None and state.config.dense_padding == "drop":
                return self.dense(lambda q, k, v: _stock_attention(stock, q, k, v, None), q, k, v, text_tokens)
            return _stock_attention(stock, q, k, v, attention_mask)
        pooled = None if pooled_q is None or pooled_k is None else (pooled_q, pooled_k, pool_block)
        return self.sparse(layer, q, k, v, text_tokens, pooled)


def _not_restorable():
    raise ValueError("a LayerDispatch holds live DynamicRad engines and cannot be restored from a pickle; "
                     "call dynamicrad.enable() on the loaded model instead")


def _stock_attention(stock, q, k, v, attention_mask) -> torch.Tensor:
    """The attention call of diffusers' Wan / HunyuanVideo processors, with that processor's backend."""
    out = dispatch_attention_fn(
        q, k, v, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
        backend=getattr(stock, "_attention_backend", None), parallel_config=getattr(stock, "_parallel_config", None),
    )
    return out.contiguous()  # the operator's declared (fake) layout


def _tags() -> dict:
    # The operator reads and advances host-side state: a CUDA graph replay would skip it.
    tag = getattr(torch.Tag, "cudagraph_unsafe", None)
    return {"tags": (tag,)} if tag is not None else {}


if register_opaque_type is not None:
    register_opaque_type(LayerDispatch, typ="reference")

    @torch.library.custom_op("dynamicrad::layer_attention", mutates_args=(), **_tags())
    def _layer_attention(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attention_mask: Optional[torch.Tensor],
        text_tokens: int,
        dispatch: LayerDispatch,
        pooled_q: Optional[torch.Tensor] = None,
        pooled_k: Optional[torch.Tensor] = None,
        pool_block: int = 0,
    ) -> torch.Tensor:
        return dispatch(q, k, v, attention_mask, text_tokens, pooled_q, pooled_k, pool_block)

    @_layer_attention.register_fake
    def _(q, k, v, attention_mask, text_tokens, dispatch, pooled_q=None, pooled_k=None, pool_block=0):
        return torch.empty_like(q, memory_format=torch.contiguous_format)

    def layer_attention(q, k, v, attention_mask, text_tokens: int, dispatch: LayerDispatch,
                        pooled: Optional[tuple] = None) -> torch.Tensor:
        """Attention of the transformer's next self-attention layer; q, k, v: [batch, tokens, heads,
        head_dim] (video tokens, then ``text_tokens`` text tokens); returns the same shape. ``pooled``:
        (pooled_q, pooled_k, pool_block), the block means of the first blocks if already computed and
        the tokens each was taken over (used by sparse layers that select)."""
        pooled_q, pooled_k, pool_block = (None, None, 0) if pooled is None else pooled
        return torch.ops.dynamicrad.layer_attention(q, k, v, attention_mask, text_tokens, dispatch, pooled_q, pooled_k,
                                                    pool_block)

else:  # pragma: no cover - older torch

    @torch.compiler.disable
    def layer_attention(q, k, v, attention_mask, text_tokens: int, dispatch: LayerDispatch,
                        pooled: Optional[tuple] = None) -> torch.Tensor:
        pooled_q, pooled_k, pool_block = (None, None, 0) if pooled is None else pooled
        return dispatch(q, k, v, attention_mask, text_tokens, pooled_q, pooled_k, pool_block)
