"""DynamicRad as a torch operator: ``torch.ops.dynamicrad.sparse_attention``.

One operator does what an attention layer needs: optionally select a new block layout from this
call's Q and K (``select=True``; the layout is kept in the engine's ``slot``), then block-sparse
attention over the slot's layout. CPU tensors run the CPU engine, CUDA tensors the Hopper kernels;
which one is fixed by the engine the handle names. It returns the output and the log-sum-exp of
every query row (float32 [batch, heads, tokens]), which the backward pass will need.

Registered with ``torch.library.custom_op`` and a fake (meta) implementation, so ``torch.compile``
traces through it without graph breaks. The engine handle and selection parameters are plain ints
and floats, which the compiler treats as constants of the graph.
"""

from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import _library as _lib
from .engine import Engine, Selection, attend_into, c_tensor, select_into


def _check_devices(x: torch.Tensor, **others: Optional[torch.Tensor]) -> None:
    """ValueError unless every tensor of ``others`` (None: absent) is on x's device. The fake (meta)
    implementations check this too: torch routes a call with any meta input to them, so a real
    x with a meta table would otherwise return uninitialised memory."""
    present = {name: t for name, t in others.items() if t is not None}
    if any(t.device != x.device for t in present.values()):
        names = ", ".join(present)
        got = ", ".join(str(t.device) for t in present.values())
        raise ValueError(f"{names}: must be on the input's device {x.device}, got {got}")


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """The checks the operators need before they read shapes (the engine checks the rest)."""
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        if t.dim() != 4:
            raise ValueError(f"{name}: expected [batch, tokens, heads, head_dim], got shape {tuple(t.shape)}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")


def _outputs(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The operators' outputs: out like q (contiguous), lse float32 [batch, heads, tokens]."""
    b, n, h, _ = q.shape
    return torch.empty_like(q, memory_format=torch.contiguous_format), q.new_empty((b, h, n), dtype=torch.float32)


@torch.library.custom_op("dynamicrad::sparse_attention", mutates_args=())
def _sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    engine: int,
    slot: int,
    select: bool,
    mode: int,
    r_near: float,
    r_far: float,
    tau_near: float,
    tau_far: float,
    pooled_q: Optional[torch.Tensor] = None,
    pooled_k: Optional[torch.Tensor] = None,
    pool_block: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_qkv(q, k, v)
    _check_devices(q, pooled_q=pooled_q, pooled_k=pooled_k)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if select:
        select_into(engine, q, k, mode, r_near, r_far, tau_near, tau_far, slot, pooled_q, pooled_k, pool_block)
    out, lse = _outputs(q)
    attend_into(engine, q, k, v, out, lse, slot)
    return out, lse


@_sparse_attention.register_fake
def _(q, k, v, engine, slot, select, mode, r_near, r_far, tau_near, tau_far, pooled_q=None, pooled_k=None,
      pool_block=0):
    _check_qkv(q, k, v)
    _check_devices(q, pooled_q=pooled_q, pooled_k=pooled_k)
    return _outputs(q)


def sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    engine: Engine,
    selection: Selection,
    slot: int = 0,
    select: bool = True,
    pooled: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    pool_block: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-sparse attention of q, k, v ([batch, tokens, heads, head_dim], the diffusers layout; no
    transposes) with a layout selected from q and k inside the engine's radial prior.

    ``pooled``: the block means of q and k for the first blocks, already computed (``norm_rotary_pooled``;
    float32 [batch, heads, blocks, head_dim] each); selection then pools only the other blocks. The
    layout is the same. ``pool_block``: the tokens each of those means was taken over
    (``norm_rotary_pooled``'s ``pool_block``), which must be the engine's block size.

    Returns (out [batch, tokens, heads, head_dim], lse float32 [batch, heads, tokens])."""
    pooled_q, pooled_k = (None, None) if pooled is None else pooled
    return torch.ops.dynamicrad.sparse_attention(
        q, k, v, engine.handle, slot, select, selection.mode_code,
        selection.r_near, selection.r_far, selection.tau_near, selection.tau_far, pooled_q, pooled_k, pool_block,
    )


@torch.library.custom_op("dynamicrad::dense_attention", mutates_args=())
def _dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, engine: int) -> tuple[torch.Tensor, torch.Tensor]:
    _check_qkv(q, k, v)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out, lse = _outputs(q)
    attend_into(engine, q, k, v, out, lse, None)
    return out, lse


@_dense_attention.register_fake
def _(q, k, v, engine):
    _check_qkv(q, k, v)
    return _outputs(q)


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, engine: Engine) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense attention of q, k, v ([batch, tokens, heads, head_dim]) on the engine's kernels: every
    block pair, no layout (dense layers and warm-up steps where ``dense_backend`` resolves to "dynamicrad").
    Returns (out, lse) as ``sparse_attention``."""
    return torch.ops.dynamicrad.dense_attention(q, k, v, engine.handle)


# The Q/K arithmetic of each supported model's stock processor (rotary.h): the RMSNorm's scope and
# where its weight multiplies, and which table entries a rotated pair uses.
_STYLES = ("wan", "hunyuan_video")


def _call_norm_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, weight, eps: float, style: str,
                      rotated_tokens: int, what: str, pool_block: int = 0, pooled_blocks: int = 0):
    """dr_norm_rotary: the rotation of x in ``style``, with the model's RMSNorm first when ``weight`` is
    given; with ``pool_block`` > 0 returns (out, block means of out's first ``pooled_blocks`` blocks)."""
    if style not in _STYLES:
        raise ValueError(f"style: {style!r}; allowed: {', '.join(repr(s) for s in _STYLES)}")
    if cos.dtype != torch.float32 or sin.dtype != torch.float32:
        raise ValueError(f"cos, sin: the rotary tables must be float32, got {cos.dtype}, {sin.dtype}")
    if x.dim() != 4:
        raise ValueError(f"x: expected [batch, tokens, heads, head_dim], got shape {tuple(x.shape)}")
    b, n, h, d = x.shape
    if not -1 <= rotated_tokens <= n:
        raise ValueError(f"rotated_tokens: {rotated_tokens}; allowed -1 (all) or [0, {n}] (x's tokens)")
    rotated = n if rotated_tokens < 0 else rotated_tokens
    hunyuan = style == "hunyuan_video"
    # The tables' own layouts ([1, tokens, 1, head_dim] is Wan's, [tokens, head_dim] HunyuanVideo's);
    # any other shape with the same number of values would be read in the wrong order.
    tables = ((rotated, d),) if hunyuan else ((1, rotated, 1, d), (rotated, d))
    if tuple(cos.shape) not in tables or tuple(sin.shape) not in tables:
        allowed = " or ".join(str(list(t)) for t in tables)
        raise ValueError(f"cos, sin: expected {allowed} (rotated tokens x head_dim), got "
                         f"{list(cos.shape)}, {list(sin.shape)}")
    _check_devices(x, cos=cos, sin=sin, weight=weight)
    options = _lib.NormRotaryOptions(pairs=1 if hunyuan else 0, rotated_tokens=rotated_tokens)
    if weight is not None:
        if not weight.is_floating_point():
            raise ValueError(f"weight: must be a floating-point tensor, got {weight.dtype}")
        if hunyuan:
            if weight.numel() != d:
                raise ValueError(f"weight: expected head_dim = {d} values (a norm over each head), got shape "
                                 f"{tuple(weight.shape)}")
            if weight.dtype != x.dtype:
                raise ValueError(f"weight: dtype {weight.dtype} must be x's {x.dtype} (diffusers' RMSNorm "
                                 f"returns the weight's dtype otherwise)")
        elif weight.numel() != h * d:
            raise ValueError(f"weight: expected heads x head_dim = {h * d} values, got shape {tuple(weight.shape)}")
        weight = weight.detach().to(torch.float32).contiguous()
        options.norm_weight = weight.data_ptr()
        options.norm_eps = float(eps)
        options.norm_scope = 1 if hunyuan else 0
        # diffusers' RMSNorm rounds x * r to a 16-bit weight's dtype before the weight multiplies
        options.norm_weighting = 1 if hunyuan and x.dtype != torch.float32 else 0
    x, cos, sin = x.contiguous(), cos.contiguous(), sin.contiguous()
    out = torch.empty_like(x)
    pooled = None
    if pool_block > 0:
        most = -(-n // pool_block)
        if not 1 <= pooled_blocks <= most:
            raise ValueError(f"pooled_blocks: {pooled_blocks}; allowed [1, {most}] (blocks of {pool_block} in "
                             f"{n} tokens)")
        pooled = torch.empty((b, h, pooled_blocks, d), dtype=torch.float32, device=x.device)
        options.pooled = pooled.data_ptr()
        options.pool_block = pool_block
        options.pooled_blocks = pooled_blocks
    elif pool_block < 0:
        raise ValueError(f"pool_block: {pool_block}; must be >= 1 (tokens a block)")
    cx, cout = c_tensor(x, "x"), c_tensor(out, "out")
    cuda = x.device.type == "cuda"
    stream = ctypes.c_void_p(torch.cuda.current_stream(x.device).cuda_stream) if cuda else None
    error = _lib.error_buffer()
    status = _lib.library().dr_norm_rotary(
        ctypes.byref(cx), ctypes.byref(cout), ctypes.byref(options), ctypes.c_void_p(cos.data_ptr()),
        ctypes.c_void_p(sin.data_ptr()), 1 if cuda else 0, stream, error, len(error),
    )
    _lib.check(status, error, what)
    return out if pooled is None else (out, pooled)


@torch.library.custom_op("dynamicrad::rotary", mutates_args=())
def _rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return _call_norm_rotary(x, cos, sin, None, 0.0, "wan", -1, "rotary")


@_rotary.register_fake
def _(x, cos, sin):
    _check_devices(x, cos=cos, sin=sin)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding of x [batch, tokens, heads, head_dim] (interleaved pairs) in one pass,
    bit-identical to diffusers' WanAttnProcessor arithmetic; cos / sin are its float32 tables
    ([1, tokens, 1, head_dim] or [tokens, head_dim])."""
    return torch.ops.dynamicrad.rotary(x, cos, sin)


@torch.library.custom_op("dynamicrad::norm_rotary", mutates_args=())
def _norm_rotary(x: torch.Tensor, weight: torch.Tensor, eps: float, cos: torch.Tensor, sin: torch.Tensor,
                 style: str = "wan", rotated_tokens: int = -1) -> torch.Tensor:
    return _call_norm_rotary(x, cos, sin, weight, eps, style, rotated_tokens, "norm_rotary")  # the library checks eps


@_norm_rotary.register_fake
def _(x, weight, eps, cos, sin, style="wan", rotated_tokens=-1):
    _check_devices(x, weight=weight, cos=cos, sin=sin)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def norm_rotary(x: torch.Tensor, weight: torch.Tensor, eps: float, cos: torch.Tensor, sin: torch.Tensor,
                style: str = "wan", rotated_tokens: int = -1) -> torch.Tensor:
    """A model's Q/K RMSNorm (``weight``, ``eps``), then its rotary embedding, in one pass over
    x [batch, tokens, heads, head_dim], with the arithmetic of the model's stock processor:

    - ``style="wan"``: ``torch.nn.RMSNorm`` over every token's heads x head_dim values (weight
      [heads * head_dim]), then ``dynamicrad.rotary``'s rotation (tables [1, tokens, 1, head_dim]).
    - ``style="hunyuan_video"``: diffusers' ``RMSNorm`` over each head (weight [head_dim], in x's
      dtype), then ``apply_rotary_emb`` (tables [tokens, head_dim]). Tokens at or past
      ``rotated_tokens`` (the text tokens of a joint sequence) are normalised, not rotated; the tables
      then have ``rotated_tokens`` rows. -1: every token is rotated.

    The norm's sum of squares is taken in double (the stock norms sum in float), so a value can differ
    from stock's in its last bit; CPU and CUDA give the same bits."""
    return torch.ops.dynamicrad.norm_rotary(x, weight, eps, cos, sin, style, rotated_tokens)


@torch.library.custom_op("dynamicrad::norm_rotary_pooled", mutates_args=())
def _norm_rotary_pooled(x: torch.Tensor, weight: torch.Tensor, eps: float, cos: torch.Tensor, sin: torch.Tensor,
                        style: str, rotated_tokens: int, pool_block: int,
                        pooled_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    if pool_block < 1:
        raise ValueError(f"pool_block: {pool_block}; must be >= 1 (tokens a block)")
    return _call_norm_rotary(x, cos, sin, weight, eps, style, rotated_tokens, "norm_rotary_pooled", pool_block,
                             pooled_blocks)


@_norm_rotary_pooled.register_fake
def _(x, weight, eps, cos, sin, style, rotated_tokens, pool_block, pooled_blocks):
    _check_devices(x, weight=weight, cos=cos, sin=sin)
    b, _, h, d = x.shape
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            x.new_empty((b, h, pooled_blocks, d), dtype=torch.float32))


def norm_rotary_pooled(x: torch.Tensor, weight: torch.Tensor, eps: float, cos: torch.Tensor, sin: torch.Tensor,
                       style: str, rotated_tokens: int, pool_block: int,
                       pooled_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm_rotary`` that also returns the block means selection needs, taken in the same pass:
    (out, pooled) with pooled float32 [batch, heads, pooled_blocks, head_dim], the mean of out's tokens
    [i * pool_block, (i + 1) * pool_block) (a last block cut at the end of x), pooling's arithmetic
    bit for bit. Pass them to ``sparse_attention(..., pooled=(pooled_q, pooled_k), pool_block=pool_block)``
    for a sequence whose first blocks are these tokens. ``pooled_blocks`` in [1, ceil(tokens /
    pool_block)]. HunyuanVideo's norm (``style="hunyuan_video"``) has a kernel that pools as it writes;
    the other cases pool the output afterwards on the GPU."""
    return torch.ops.dynamicrad.norm_rotary_pooled(x, weight, eps, cos, sin, style, rotated_tokens, pool_block,
                                                   pooled_blocks)
