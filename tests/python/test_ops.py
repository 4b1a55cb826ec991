"""torch.ops.dynamicrad.sparse_attention / dynamicrad.sparse_attention against a float64 torch
reference: dense attention masked by the engine's own block layout (Engine.layout), expanded from
blocks to tokens."""

from __future__ import annotations

import math

import pytest
import torch

import dynamicrad
from dynamicrad import Engine, Geometry, Selection

HEADS, HEAD_DIM, BLOCK = 2, 32, 32

GEOMETRIES = {
    # 5 x 6 x 7 = 210 video tokens: 7 blocks, the last one 18 tokens long.
    "odd": dict(frames=5, height=6, width=7),
    # 8 x 5 x 5 = 200 video tokens + 13 text tokens after them: 213 tokens, 7 blocks (last 21 long).
    "text": dict(frames=8, height=5, width=5, text_tokens=13, text_placement="suffix"),
}


def make_geometry(name: str, **kw) -> Geometry:
    return Geometry(heads=HEADS, head_dim=HEAD_DIM, block_size=BLOCK, **{**GEOMETRIES[name], **kw})


def selection_for(mode: str, geometry: Geometry) -> tuple:
    """(prior, selection): the high-motion LUT row of the mode, with a keep ratio low enough that the
    static-ratio layouts of these tiny geometries are really sparse."""
    entry = dynamicrad.lut_entry("high", mode, geometry=geometry)
    selection = entry.selection
    if mode == "static-ratio":
        selection = Selection(mode="static-ratio", r_near=0.3, r_far=0.1)
    return entry.prior, selection


def qkv(batch: int, tokens: int, dtype: torch.dtype, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    # Some structure (a shared component) so that scores are not all alike.
    base = torch.randn(1, tokens, HEADS, HEAD_DIM, generator=g)
    out = []
    for _ in range(3):
        t = torch.randn(batch, tokens, HEADS, HEAD_DIM, generator=g) + 0.5 * base
        out.append(t.to(dtype))
    return tuple(out)


def check_csr(offsets: torch.Tensor, cols: torch.Tensor, rows: int, blocks: int) -> None:
    assert offsets.dtype == torch.int64 and cols.dtype == torch.int32
    assert offsets.numel() == rows + 1
    assert offsets[0] == 0 and offsets[-1] == cols.numel()
    assert bool((offsets[1:] >= offsets[:-1]).all())
    assert bool(((cols >= 0) & (cols < blocks)).all())
    for r in range(rows):
        row = cols[offsets[r]: offsets[r + 1]]
        assert bool((row[1:] > row[:-1]).all()), f"row {r} is not strictly ascending: {row.tolist()}"


def token_mask(offsets, cols, batch: int, heads: int, tokens: int, block: int) -> torch.Tensor:
    """[batch, heads, tokens, tokens] bool: query token i may attend key token j."""
    blocks = math.ceil(tokens / block)
    rows = batch * heads * blocks
    check_csr(offsets, cols, rows, blocks)
    counts = offsets[1:] - offsets[:-1]
    row_ids = torch.repeat_interleave(torch.arange(rows), counts)
    block_mask = torch.zeros(rows, blocks, dtype=torch.bool)
    block_mask[row_ids, cols.long()] = True
    block_mask = block_mask.view(batch, heads, blocks, blocks)
    expanded = block_mask.repeat_interleave(block, 2).repeat_interleave(block, 3)
    return expanded[:, :, :tokens, :tokens]


def reference(q, k, v, mask=None, scale=None) -> tuple:
    """float64 attention; rows with nothing kept give output 0 and lse -inf (the engine's rule)."""
    q, k, v = q.double(), k.double(), v.double()
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    p = torch.exp(scores - lse.unsqueeze(-1).clamp_min(-1e300))
    p = torch.nan_to_num(p, nan=0.0)
    out = torch.einsum("bhqk,bkhd->bqhd", p, v)
    return out, lse


# The CPU engine accumulates in fp32; bf16 / f16 outputs are rounded once at the end.
TOL = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
       torch.float16: dict(atol=3e-3, rtol=3e-3)}
LSE_TOL = {torch.float32: dict(atol=2e-5, rtol=1e-5), torch.bfloat16: dict(atol=1e-4, rtol=1e-5),
           torch.float16: dict(atol=1e-4, rtol=1e-5)}


@pytest.mark.parametrize("geometry_name", sorted(GEOMETRIES))
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("mode", ["static-ratio", "dynamic-threshold"])
def test_matches_masked_reference(mode, dtype, batch, geometry_name):
    g = make_geometry(geometry_name)
    assert g.tokens % BLOCK != 0  # the short last block is part of what is tested
    prior, selection = selection_for(mode, g)
    engine = Engine(g, prior=prior, slots=1)
    q, k, v = qkv(batch, g.tokens, dtype)

    out, lse = dynamicrad.sparse_attention(q, k, v, engine, selection)
    assert out.dtype == dtype and out.shape == q.shape
    assert lse.dtype == torch.float32 and lse.shape == (batch, HEADS, g.tokens)

    offsets, cols = engine.layout(0)
    kept, total = engine.kept(0)
    blocks = math.ceil(g.tokens / BLOCK)
    assert total == batch * HEADS * blocks * blocks
    assert kept == cols.numel()
    assert 0 < kept < total, "the layout must be sparse for this test to mean anything"

    mask = token_mask(offsets, cols, batch, HEADS, g.tokens, BLOCK)
    ref_out, ref_lse = reference(q, k, v, mask)
    torch.testing.assert_close(out.double(), ref_out, **TOL[dtype])
    torch.testing.assert_close(lse.double(), ref_lse, **LSE_TOL[dtype])

    # The mask matters: dense attention is far from the sparse result.
    dense_out, _ = reference(q, k, v)
    assert (dense_out - ref_out).abs().max() > 10 * TOL[dtype]["atol"]


def test_raw_op_select_and_reuse():
    """torch.ops.dynamicrad.sparse_attention with select=False reuses the slot's layout; the raw op
    and the wrapper agree."""
    g = make_geometry("odd")
    prior, sel = selection_for("dynamic-threshold", g)
    engine = Engine(g, prior=prior, slots=2, keep_layouts=True)
    q, k, v = qkv(1, g.tokens, torch.float32, seed=3)
    q2, k2, v2 = qkv(1, g.tokens, torch.float32, seed=4)
    args = (engine.handle, 1, True, sel.mode_code, sel.r_near, sel.r_far, sel.tau_near, sel.tau_far)
    out, lse = torch.ops.dynamicrad.sparse_attention(q, k, v, *args)
    wrapped, wrapped_lse = dynamicrad.sparse_attention(q, k, v, engine, sel, slot=1)
    assert torch.equal(out, wrapped) and torch.equal(lse, wrapped_lse)
    layout_1 = engine.layout(1)

    # Select another layout in slot 0 from other inputs; slot 1 keeps its own.
    dynamicrad.sparse_attention(q2, k2, v2, engine, sel, slot=0)
    reused, reused_lse = dynamicrad.sparse_attention(q2, k2, v2, engine, sel, slot=1, select=False)
    offsets, cols = engine.layout(1)
    assert torch.equal(offsets, layout_1[0]) and torch.equal(cols, layout_1[1])
    ref_out, ref_lse = reference(q2, k2, v2, token_mask(offsets, cols, 1, HEADS, g.tokens, BLOCK))
    torch.testing.assert_close(reused.double(), ref_out, **TOL[torch.float32])
    torch.testing.assert_close(reused_lse.double(), ref_lse, **LSE_TOL[torch.float32])


def test_full_layout_equals_dense_attention():
    """A dense prior with keep ratio 1 keeps every block: the op is exact dense attention."""
    g = make_geometry("text")
    engine = Engine(g, prior={"gamma": 16.0, "theta_m": 0.0, "theta_c": 0.0})
    q, k, v = qkv(2, g.tokens, torch.float32, seed=5)
    out, lse = dynamicrad.sparse_attention(q, k, v, engine, Selection(mode="static-ratio", r_near=1.0, r_far=1.0))
    kept, total = engine.kept(0)
    assert kept == total
    ref_out, ref_lse = reference(q, k, v)
    torch.testing.assert_close(out.double(), ref_out, **TOL[torch.float32])
    torch.testing.assert_close(lse.double(), ref_lse, **LSE_TOL[torch.float32])
    # and matches torch's own SDPA
    sdpa = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    torch.testing.assert_close(out, sdpa.transpose(1, 2), atol=2e-5, rtol=1e-4)


def test_engine_scale_option():
    g = make_geometry("odd")
    engine = Engine(g, prior={"gamma": 16.0, "theta_m": 0.0, "theta_c": 0.0}, scale=0.5)
    q, k, v = qkv(1, g.tokens, torch.float32, seed=6)
    out, lse = dynamicrad.sparse_attention(q, k, v, engine, Selection(r_near=1.0, r_far=1.0))
    ref_out, ref_lse = reference(q, k, v, scale=0.5)
    torch.testing.assert_close(out.double(), ref_out, **TOL[torch.float32])
    torch.testing.assert_close(lse.double(), ref_lse, **LSE_TOL[torch.float32])


def test_token_permutation_tiled3d():
    """Block 32 tiles are 1 x 4 x 8: in a 2 x 8 x 16 video the first block is frame 0, rows 0-3,
    columns 0-7; text tokens never move; raster order is the identity."""
    g = Geometry(frames=2, height=8, width=16, heads=HEADS, head_dim=HEAD_DIM, block_size=BLOCK,
                 text_tokens=5, text_placement="suffix", token_order="tiled3d")
    perm = g.token_permutation()
    assert perm.dtype == torch.int64 and perm.numel() == g.tokens
    assert torch.equal(perm.sort().values, torch.arange(g.tokens))
    assert torch.equal(perm[g.video_tokens:], torch.arange(g.video_tokens, g.tokens))
    first_tile = torch.tensor([y * 16 + x for y in range(4) for x in range(8)])
    assert torch.equal(perm[:BLOCK].sort().values, first_tile)
    raster = Geometry(frames=2, height=8, width=16, heads=HEADS, head_dim=HEAD_DIM, block_size=BLOCK)
    assert torch.equal(raster.token_permutation(), torch.arange(raster.tokens))


# ---- torch.library / torch.compile ------------------------------------------------------------
def _op_args(engine: Engine, sel: Selection, q, k, v, select=True, slot=0):
    return (q, k, v, engine.handle, slot, select, sel.mode_code, sel.r_near, sel.r_far, sel.tau_near, sel.tau_far)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_opcheck(dtype):
    """All of opcheck's default sub-tests (schema, autograd registration, fake tensor, AOT dispatch
    with dynamic shapes) apply on CPU with inputs that do not require grad."""
    g = make_geometry("odd")
    prior, sel = selection_for("dynamic-threshold", g)
    engine = Engine(g, prior=prior)
    q, k, v = qkv(2, g.tokens, dtype)
    result = torch.library.opcheck(torch.ops.dynamicrad.sparse_attention.default, _op_args(engine, sel, q, k, v))
    assert result and all(status == "SUCCESS" for status in result.values()), result
    # select=False after a select (the layout-reuse path)
    result = torch.library.opcheck(
        torch.ops.dynamicrad.sparse_attention.default, _op_args(engine, sel, q, k, v, select=False)
    )
    assert all(status == "SUCCESS" for status in result.values()), result


def _expect_one_graph_like_eager(fn, q, k, v) -> None:
    """torch.compile(fullgraph=True) of fn gives eager's (out, lse) bits, in one graph without breaks."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got = compiled(q, k, v)
    want = fn(q, k, v)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    explanation = torch._dynamo.explain(fn)(q, k, v)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    torch._dynamo.reset()


def test_torch_compile_fullgraph_matches_eager():
    g = make_geometry("text")
    prior, sel = selection_for("static-ratio", g)
    engine = Engine(g, prior=prior)
    q, k, v = qkv(2, g.tokens, torch.float32, seed=7)

    def fn(q, k, v):
        out, lse = dynamicrad.sparse_attention(q * 1.5, k, v, engine, sel)
        return out.sum(dim=-1) + 1.0, lse

    _expect_one_graph_like_eager(fn, q, k, v)


# ---- errors -----------------------------------------------------------------------------------
@pytest.fixture
def setup():
    g = make_geometry("odd")
    prior, sel = selection_for("static-ratio", g)
    engine = Engine(g, prior=prior, slots=2)
    q, k, v = qkv(1, g.tokens, torch.float32)
    return engine, sel, q, k, v


def test_wrong_token_count(setup):
    engine, sel, q, k, v = setup
    with pytest.raises(ValueError, match=r"^q: has 209 tokens.*has 210"):
        dynamicrad.sparse_attention(q[:, :-1].contiguous(), k[:, :-1].contiguous(), v[:, :-1].contiguous(), engine, sel)


@pytest.mark.parametrize("which", ["k", "v"])
def test_mismatched_shapes(setup, which):
    engine, sel, q, k, v = setup
    bad = {"k": k, "v": v}
    bad[which] = bad[which][:, :-3].contiguous()
    with pytest.raises(ValueError, match=rf"^{which}: .*tokens"):
        dynamicrad.sparse_attention(q, bad["k"], bad["v"], engine, sel)
    bad = {"k": k, "v": v}
    bad[which] = bad[which][..., :16].contiguous()
    with pytest.raises(ValueError, match=rf"^{which}: .*head_dim"):
        dynamicrad.sparse_attention(q, bad["k"], bad["v"], engine, sel)


def test_batch_mismatch(setup):
    engine, sel, q, k, v = setup
    with pytest.raises(ValueError, match=r"^k: shape \[2, 210, 2, 32\]"):
        dynamicrad.sparse_attention(q, torch.cat([k, k]), v, engine, sel)
    with pytest.raises(ValueError, match=r"^v: shape \[2, 210, 2, 32\]"):
        dynamicrad.sparse_attention(q, k, torch.cat([v, v]), engine, sel)


def test_not_four_dimensional(setup):
    engine, sel, q, k, v = setup
    with pytest.raises(ValueError, match=r"^q: expected \[batch, tokens, heads, head_dim\]"):
        dynamicrad.sparse_attention(q[0], k[0], v[0], engine, sel)


def test_reuse_with_another_batch(setup):
    engine, sel, q, k, v = setup
    dynamicrad.sparse_attention(q, k, v, engine, sel, slot=0)
    q2, k2, v2 = (torch.cat([t, t]) for t in (q, k, v))
    with pytest.raises(ValueError, match="^q: batch 2"):
        dynamicrad.sparse_attention(q2, k2, v2, engine, sel, slot=0, select=False)


def test_non_finite_inputs(setup):
    engine, sel, q, k, v = setup
    q = q.clone()
    q[0, 3, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^q: NaN"):
        dynamicrad.sparse_attention(q, k, v, engine, sel)


@pytest.mark.parametrize(
    "selection, field",
    [
        (Selection(r_near=2.0), "selection.r_near"),
        (Selection(r_far=-0.5), "selection.r_far"),
        (Selection(r_near=float("nan")), "selection.r_near"),
        (Selection(mode="dynamic-threshold", tau_near=-1.0), "selection.tau_near"),
        (Selection(mode="dynamic-threshold", tau_far=1.5), "selection.tau_far"),
    ],
)
def test_selection_out_of_range(setup, selection, field):
    engine, _, q, k, v = setup
    with pytest.raises(ValueError, match=rf"^{field.replace('.', '[.]')}"):
        dynamicrad.sparse_attention(q, k, v, engine, selection)


def test_wrong_heads(setup):
    engine, sel, q, k, v = setup
    with pytest.raises(ValueError, match=r"^q: .*heads"):
        dynamicrad.sparse_attention(q[:, :, :1].contiguous(), k[:, :, :1].contiguous(), v[:, :, :1].contiguous(), engine, sel)


def test_unsupported_dtype(setup):
    engine, sel, q, k, v = setup
    with pytest.raises(ValueError, match=r"^q: dtype torch.float64"):
        dynamicrad.sparse_attention(q.double(), k.double(), v.double(), engine, sel)


def test_mixed_dtypes(setup):
    engine, sel, q, k, v = setup
    with pytest.raises(ValueError, match="share a dtype"):
        dynamicrad.sparse_attention(q, k.bfloat16(), v, engine, sel)


def test_closed_engine(setup):
    engine, sel, q, k, v = setup
    engine.close()
    with pytest.raises(ValueError, match="engine: closed"):
        dynamicrad.sparse_attention(q, k, v, engine, sel)
    with pytest.raises(ValueError, match="engine"):
        engine.kept(0)
    engine.close()  # closing twice is harmless


def test_stale_handle_is_an_error_not_a_crash(setup):
    """A raw handle kept past close() (the compiled-graph constant) is rejected by the C library."""
    engine, sel, q, k, v = setup
    args = _op_args(engine, sel, q, k, v)
    engine.close()
    with pytest.raises(ValueError, match="not a live engine handle"):
        torch.ops.dynamicrad.sparse_attention(*args)


def test_bad_selection_mode():
    with pytest.raises(ValueError, match=r"selection\.mode = 'foo'"):
        Selection(mode="foo")


@pytest.mark.parametrize("slot", [2, -1])
def test_slot_out_of_range(setup, slot):
    engine, sel, q, k, v = setup
    with pytest.raises(ValueError, match=rf"^slot: {slot}: allowed range \[0, 1\]"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, slot=slot)
    with pytest.raises(ValueError, match="slot"):
        engine.kept(slot)


def test_slot_never_selected(setup):
    engine, sel, q, k, v = setup
    with pytest.raises(ValueError, match="^slot: 1"):
        engine.kept(1)
    with pytest.raises(ValueError, match="^slot: 0"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, slot=0, select=False)


def test_shared_layout_buffer_rejects_stale_slot(setup):
    """Without keep_layouts a slot's layout is only usable until another slot selects."""
    engine, sel, q, k, v = setup
    dynamicrad.sparse_attention(q, k, v, engine, sel, slot=0)
    dynamicrad.sparse_attention(q, k, v, engine, sel, slot=1)
    with pytest.raises(ValueError, match="^slot: 0"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, slot=0, select=False)


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("geometry.block_size", dict(block_size=48)),
        ("geometry.frames", dict(frames=0)),
        ("geometry.text_placement", dict(text_tokens=4, text_placement="none")),
    ],
)
def test_bad_geometry(field, kwargs):
    g = Geometry(**{**dict(frames=2, height=4, width=4, heads=2, head_dim=32, block_size=32), **kwargs})
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Engine(g)


@pytest.mark.parametrize(
    "options, field",
    [
        (dict(slots=0), "options.slots"),
        (dict(threads=-1), "options.threads"),
        (dict(scale=-1.0), "options.scale"),
    ],
)
def test_bad_engine_options(options, field):
    with pytest.raises(ValueError, match=field.replace(".", "[.]")):
        Engine(make_geometry("odd"), **options)


def test_bad_tile():
    g = Geometry(frames=5, height=6, width=7, heads=2, head_dim=32, block_size=32, token_order="tiled3d", tile=(1, 4, 4))
    with pytest.raises(ValueError, match=r"geometry\.tile"):
        Engine(g)
    ok = Geometry(frames=5, height=6, width=7, heads=2, head_dim=32, block_size=32, token_order="tiled3d", tile=(2, 4, 4))
    assert Engine(ok).describe()["tokens"] == 210


def test_bad_prior_field():
    g = make_geometry("odd")
    with pytest.raises(ValueError, match="prior.gamma"):
        Engine(g, prior={"gamma": -1.0})
    with pytest.raises(ValueError, match="prior.bogus"):
        Engine(g, prior={"bogus": 1.0})


def test_bad_device_types():
    g = make_geometry("odd")
    with pytest.raises(ValueError, match="device"):
        Engine(g, device="meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour of a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_engine_without_gpu_raises(device):
    with pytest.raises((RuntimeError, ValueError)):
        Engine(make_geometry("odd"), device=device)


def test_non_contiguous_inputs():
    """Inputs in [batch, heads, tokens, dim] memory (a transposed view) are made contiguous."""
    g = make_geometry("odd")
    prior, sel = selection_for("dynamic-threshold", g)
    engine = Engine(g, prior=prior)
    gen = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(2, HEADS, g.tokens, HEAD_DIM, generator=gen).transpose(1, 2) for _ in range(3))
    assert not q.is_contiguous()
    out, lse = dynamicrad.sparse_attention(q, k, v, engine, sel)
    offsets, cols = engine.layout(0)
    ref_out, ref_lse = reference(q, k, v, token_mask(offsets, cols, 2, HEADS, g.tokens, BLOCK))
    torch.testing.assert_close(out.double(), ref_out, **TOL[torch.float32])
    torch.testing.assert_close(lse.double(), ref_lse, **LSE_TOL[torch.float32])


def test_backward_is_an_error_not_a_silent_zero():
    """No autograd formula is registered yet: backward must raise rather than return wrong grads."""
    g = make_geometry("odd")
    engine = Engine(g)
    q, k, v = qkv(1, g.tokens, torch.float32)
    q.requires_grad_(True)
    with torch.enable_grad():
        out, _ = dynamicrad.sparse_attention(q, k, v, engine, Selection())
        with pytest.raises(RuntimeError, match="no autograd formula"):
            out.sum().backward()


# ---- the one-pass rotary embedding --------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rotary_is_bit_identical_to_the_stock_arithmetic(dtype):
    from dynamicrad.integrations.wan import _rotate

    g = torch.Generator().manual_seed(11)
    x = (torch.randn(2, 37, 3, 64, generator=g) * 3).to(dtype)
    cos, sin = torch.randn(1, 37, 1, 64, generator=g), torch.randn(1, 37, 1, 64, generator=g)
    assert torch.equal(dynamicrad.rotary(x, cos, sin), _rotate(x, cos, sin))
    # [tokens, head_dim] tables are the same numbers
    assert torch.equal(dynamicrad.rotary(x, cos[0, :, 0], sin[0, :, 0]), _rotate(x, cos, sin))


def _stock_norm_rotary(x, weight, eps, cos, sin):
    """What diffusers' Wan processor does: torch.nn.RMSNorm over heads x head_dim, then the rotary."""
    from dynamicrad.integrations.wan import _rotate

    b, n, h, d = x.shape
    normed = torch.nn.functional.rms_norm(x.flatten(2), (h * d,), weight, eps)
    return _rotate(normed.unflatten(2, (h, d)), cos, sin)


def _norm_rotary_inputs(dtype, shape=(2, 9, 3, 16), seed=12):
    g = torch.Generator().manual_seed(seed)
    b, n, h, d = shape
    x = (3 * torch.randn(shape, generator=g)).to(dtype)
    weight = (1 + 0.3 * torch.randn(h * d, generator=g)).to(dtype)
    cos, sin = torch.randn(1, n, 1, d, generator=g), torch.randn(1, n, 1, d, generator=g)
    return x, weight, cos, sin


def test_norm_rotary_is_the_stock_arithmetic_up_to_the_sum_of_squares():
    # float32: the only difference is the rounding of the sum of squares
    x, weight, cos, sin = _norm_rotary_inputs(torch.float32)
    out = dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin)
    ref = _stock_norm_rotary(x, weight, 1e-6, cos, sin)
    torch.testing.assert_close(out, ref, rtol=2e-6, atol=2e-6)
    # bfloat16: the norm's output is rounded to bfloat16 before the rotation, as in stock; a last-bit
    # difference of the norm's factor flips few of those roundings
    x, weight, cos, sin = _norm_rotary_inputs(torch.bfloat16, shape=(1, 64, 4, 32))
    out = dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin).float()
    ref = _stock_norm_rotary(x, weight, 1e-6, cos, sin).float()
    assert (out == ref).float().mean() > 0.98
    assert (out - ref).norm() / ref.norm() < 2e-3


def test_norm_rotary_normalises_over_all_heads_and_rotates_like_rotary():
    # with weight 1 the output is rotary(x / rms(token)); the rotary part is dynamicrad.rotary's
    x, _, cos, sin = _norm_rotary_inputs(torch.float32, shape=(1, 5, 4, 8))
    out = dynamicrad.norm_rotary(x, torch.ones(32), 0.0, cos, sin)
    rms = x.double().pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
    torch.testing.assert_close(out, dynamicrad.rotary((x.double() / rms).float(), cos, sin), rtol=1e-5, atol=1e-6)


def _stock_hunyuan_norm_rotary(x, weight, eps, cos, sin, rotated):
    """What diffusers' HunyuanVideo processor does: its RMSNorm over each head, then apply_rotary_emb
    on the first ``rotated`` tokens (the video tokens of a joint sequence)."""
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.normalization import RMSNorm

    norm = RMSNorm(x.shape[-1], eps=eps).to(weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        normed = norm(x)
    return torch.cat([apply_rotary_emb(normed[:, :rotated], (cos, sin), sequence_dim=1), normed[:, rotated:]], 1)


def _hunyuan_inputs(dtype, shape, rotated, seed=13):
    g = torch.Generator().manual_seed(seed)
    b, n, h, d = shape
    x = (3 * torch.randn(shape, generator=g)).to(dtype)
    weight = (1 + 0.3 * torch.randn(d, generator=g)).to(dtype)
    # HunyuanVideo's tables repeat every entry for the pair; random ones check each output's own entry
    cos, sin = torch.randn(rotated, d, generator=g), torch.randn(rotated, d, generator=g)
    return x, weight, cos, sin


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_norm_rotary_hunyuan_video_is_the_stock_arithmetic_up_to_the_sum_of_squares(dtype):
    shape, rotated = (2, 40, 3, 16), 33  # 7 text tokens: normalised, not rotated
    x, weight, cos, sin = _hunyuan_inputs(dtype, shape, rotated)
    out = dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin, style="hunyuan_video", rotated_tokens=rotated)
    ref = _stock_hunyuan_norm_rotary(x, weight, 1e-6, cos, sin, rotated)
    assert out.dtype == ref.dtype == dtype
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref, rtol=2e-6, atol=2e-6)
    else:
        # the norm's factor may differ in its last bit, which flips few 16-bit roundings
        assert (out == ref).float().mean() > 0.98
        assert ((out.float() - ref.float()).norm() / ref.float().norm()) < 2e-3
    # every token rotated (the dual-stream blocks' video-only Q and K)
    out = dynamicrad.norm_rotary(x[:, :rotated], weight, 1e-6, cos, sin, style="hunyuan_video")
    ref = _stock_hunyuan_norm_rotary(x[:, :rotated], weight, 1e-6, cos, sin, rotated)
    assert ((out.float() - ref.float()).norm() / ref.float().norm()) < 2e-3


def test_norm_rotary_hunyuan_video_normalises_each_head_and_leaves_text_unrotated():
    x, _, cos, sin = _hunyuan_inputs(torch.float32, (1, 6, 4, 8), 4)
    out = dynamicrad.norm_rotary(x, torch.ones(8), 0.0, cos, sin, style="hunyuan_video", rotated_tokens=4)
    normed = (x.double() / x.double().pow(2).mean(dim=3, keepdim=True).sqrt()).float()
    torch.testing.assert_close(out[:, 4:], normed[:, 4:], rtol=1e-6, atol=1e-6)
    from diffusers.models.embeddings import apply_rotary_emb

    torch.testing.assert_close(out[:, :4], apply_rotary_emb(normed[:, :4], (cos, sin), sequence_dim=1),
                               rtol=1e-5, atol=1e-5)
    torch.library.opcheck(torch.ops.dynamicrad.norm_rotary.default,
                          (x, torch.ones(8), 1e-6, cos, sin, "hunyuan_video", 4))


def test_norm_rotary_hunyuan_video_errors():
    x, weight, cos, sin = _hunyuan_inputs(torch.bfloat16, (1, 6, 2, 8), 4)
    with pytest.raises(ValueError, match="weight: expected head_dim = 8"):
        dynamicrad.norm_rotary(x, torch.ones(16, dtype=x.dtype), 1e-6, cos, sin, "hunyuan_video", 4)
    with pytest.raises(ValueError, match="weight: dtype torch.float32 must be x's torch.bfloat16"):
        dynamicrad.norm_rotary(x, weight.float(), 1e-6, cos, sin, "hunyuan_video", 4)
    with pytest.raises(ValueError, match=r"cos, sin: expected \[6, 8\] \(rotated tokens x head_dim\)"):
        dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin, "hunyuan_video", -1)
    # the right number of values in another layout would be read in the wrong order
    for bad in (cos.T.contiguous(), cos.reshape(1, 4, 1, 8), cos.reshape(8, 4)):
        with pytest.raises(ValueError, match=r"cos, sin: expected \[4, 8\]"):
            dynamicrad.norm_rotary(x, weight, 1e-6, bad, sin, "hunyuan_video", 4)
    for rotated in (-2, 7):
        with pytest.raises(ValueError, match=r"rotated_tokens: .*allowed -1 \(all\) or \[0, 6\]"):
            dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin, "hunyuan_video", rotated)
    with pytest.raises(ValueError, match="style: 'flux'; allowed: 'wan', 'hunyuan_video'"):
        dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin, "flux", 4)


def test_norm_rotary_with_no_rotated_tokens_wants_empty_tables():
    """rotated_tokens=0: no token is rotated, so the tables have 0 rows; tables of every token are
    refused, not read."""
    x, weight, cos, sin = _hunyuan_inputs(torch.float32, (1, 6, 2, 8), 6)
    for style, bad in (("hunyuan_video", cos), ("wan", cos.reshape(1, 6, 1, 8))):
        w = weight if style == "hunyuan_video" else weight.repeat(2)
        with pytest.raises(ValueError, match=r"cos, sin: expected .*\[0, 8\] \(rotated"):
            dynamicrad.norm_rotary(x, w, 1e-6, bad, bad, style, 0)


def test_norm_rotary_with_no_rotated_tokens_only_normalises():
    # the [0, head_dim] tables have a null data pointer; with no token rotated they are never read
    x, _, _, _ = _hunyuan_inputs(torch.float32, (1, 6, 4, 8), 6)
    empty = torch.empty(0, 8)
    out = dynamicrad.norm_rotary(x, torch.ones(8), 0.0, empty, empty, style="hunyuan_video", rotated_tokens=0)
    normed = (x.double() / x.double().pow(2).mean(dim=3, keepdim=True).sqrt()).float()
    torch.testing.assert_close(out, normed, rtol=1e-6, atol=1e-6)


def test_norm_rotary_opcheck_and_errors():
    x, weight, cos, sin = _norm_rotary_inputs(torch.float32, shape=(1, 9, 2, 8))
    torch.library.opcheck(torch.ops.dynamicrad.norm_rotary.default, (x, weight, 1e-6, cos, sin))
    for eps in (-1e-6, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps"):
            dynamicrad.norm_rotary(x, weight, eps, cos, sin)
    with pytest.raises(ValueError, match="weight: expected heads x head_dim = 16"):
        dynamicrad.norm_rotary(x, weight[:8], 1e-6, cos, sin)
    with pytest.raises(ValueError, match="weight: must be a floating-point"):
        dynamicrad.norm_rotary(x, torch.ones(16, dtype=torch.int32), 1e-6, cos, sin)
    with pytest.raises(ValueError, match="tokens x head_dim"):
        dynamicrad.norm_rotary(x, weight, 1e-6, cos[:, :8], sin[:, :8])
    with pytest.raises(ValueError, match=r"x: expected \[batch, tokens, heads, head_dim\]"):
        dynamicrad.norm_rotary(x.flatten(2), weight, 1e-6, cos, sin)


def test_rotary_opcheck_and_errors():
    x = torch.randn(1, 9, 2, 8)
    cos, sin = torch.randn(1, 9, 1, 8), torch.randn(1, 9, 1, 8)
    torch.library.opcheck(torch.ops.dynamicrad.rotary.default, (x, cos, sin))
    with pytest.raises(ValueError, match="float32"):
        dynamicrad.rotary(x, cos.double(), sin)
    with pytest.raises(ValueError, match="tokens x head_dim"):
        dynamicrad.rotary(x, cos[:, :8], sin[:, :8])
    with pytest.raises(ValueError, match="even"):
        dynamicrad.rotary(torch.randn(1, 9, 2, 7), torch.randn(9, 7), torch.randn(9, 7))
    with pytest.raises(ValueError, match="dtype"):
        dynamicrad.rotary(x.double(), cos, sin)


# ---- fused pooling: norm_rotary_pooled and sparse_attention(pooled=...) ------------------------
def _sequential_block_means(out: torch.Tensor, pool_block: int, pooled_blocks: int) -> torch.Tensor:
    """The promised arithmetic, spelled out: per block a float32 sum of out's tokens in ascending
    token order (one elementwise add a token, so no reassociation), times float32(1 / count).
    out: [batch, tokens, heads, head_dim] -> float32 [batch, heads, pooled_blocks, head_dim]."""
    b, n, h, d = out.shape
    means = []
    for blk in range(pooled_blocks):
        first = blk * pool_block
        count = min(pool_block, n - first)
        acc = torch.zeros(b, h, d, dtype=torch.float32)
        for t in range(first, first + count):
            acc = acc + out[:, t].float()
        # float32 division, as in C's 1.0f / float(count) (no double rounding through 1.0 / count)
        inv = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(float(count), dtype=torch.float32)
        means.append(acc * inv)
    return torch.stack(means, dim=2)


def _pooled_case(style: str, dtype, shape=(2, 37, 3, 16), rotated=30, seed=21):
    """(x, weight, cos, sin, rotated_tokens) for ``style``: wan's weight is [heads * head_dim] and any
    float dtype, HunyuanVideo's is [head_dim] in x's dtype; the tables are float32 [rotated, head_dim]."""
    g = torch.Generator().manual_seed(seed)
    b, n, h, d = shape
    x = (3 * torch.randn(shape, generator=g) + 0.7).to(dtype)  # an offset: means far from zero
    if style == "wan":
        weight = (1 + 0.3 * torch.randn(h * d, generator=g)).to(dtype)
    else:
        weight = (1 + 0.3 * torch.randn(d, generator=g)).to(dtype)
    rows = n if rotated < 0 else rotated
    cos, sin = torch.randn(rows, d, generator=g), torch.randn(rows, d, generator=g)
    return x, weight, cos, sin, rotated


DTYPES = [torch.float32, torch.bfloat16, torch.float16]
DTYPE_IDS = ["f32", "bf16", "f16"]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("style", ["wan", "hunyuan_video"])
@pytest.mark.parametrize("rotated", [-1, 30], ids=["all-rotated", "rotated30of37"])
def test_norm_rotary_pooled_is_norm_rotary_plus_exact_block_means(style, dtype, rotated):
    """out: norm_rotary's bits; pooled: the block means of out, bit for bit (37 tokens in blocks of 8:
    the last block holds 5), for every pooled_blocks in [1, 5] and block sizes that split the tokens
    differently."""
    from dynamicrad.ops import norm_rotary_pooled

    x, weight, cos, sin, rotated = _pooled_case(style, dtype, rotated=rotated)
    want = dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin, style, rotated)
    for pool_block, pooled_blocks in [(8, 5), (8, 3), (8, 1), (37, 1), (5, 8), (1, 37), (64, 1), (36, 2)]:
        out, pooled = norm_rotary_pooled(x, weight, 1e-6, cos, sin, style, rotated, pool_block, pooled_blocks)
        assert out.dtype == dtype and out.shape == x.shape
        assert torch.equal(out, want), (pool_block, pooled_blocks)
        assert pooled.dtype == torch.float32 and pooled.shape == (2, 3, pooled_blocks, 16), (pool_block, pooled_blocks)
        assert pooled.is_contiguous()
        ref = _sequential_block_means(want, pool_block, pooled_blocks)
        assert torch.equal(pooled, ref), (pool_block, pooled_blocks, (pooled - ref).abs().max().item())
    # blocks of one token are the tokens themselves
    _, pooled = norm_rotary_pooled(x, weight, 1e-6, cos, sin, style, rotated, 1, 37)
    assert torch.equal(pooled, want.float().permute(0, 2, 1, 3))


def test_block_means_reference_is_order_sensitive():
    """The exact comparisons above have teeth: on these inputs another summation order (reversed, or
    torch's own reduction) gives other bits for some block means."""
    from dynamicrad.ops import norm_rotary_pooled

    x, weight, cos, sin, rotated = _pooled_case("hunyuan_video", torch.float32, shape=(2, 64, 3, 16))
    out, pooled = norm_rotary_pooled(x, weight, 1e-6, cos, sin, "hunyuan_video", rotated, 32, 2)
    reversed_means = _sequential_block_means(out.flip(1), 32, 2).flip(2)
    assert not torch.equal(reversed_means, pooled)
    torch.testing.assert_close(reversed_means, pooled, rtol=1e-5, atol=1e-6)
    assert torch.equal(_sequential_block_means(out, 32, 2), pooled)


def test_norm_rotary_pooled_raw_op_and_opcheck():
    from dynamicrad.ops import norm_rotary_pooled

    x, weight, cos, sin, rotated = _pooled_case("hunyuan_video", torch.float32, shape=(1, 19, 2, 8), rotated=15)
    raw = torch.ops.dynamicrad.norm_rotary_pooled(x, weight, 1e-6, cos, sin, "hunyuan_video", rotated, 8, 3)
    wrapped = norm_rotary_pooled(x, weight, 1e-6, cos, sin, "hunyuan_video", rotated, 8, 3)
    assert torch.equal(raw[0], wrapped[0]) and torch.equal(raw[1], wrapped[1])
    for args in [(x, weight, 1e-6, cos, sin, "hunyuan_video", rotated, 8, 3),
                 (x, weight, 1e-6, cos, sin, "hunyuan_video", rotated, 8, 2)]:
        result = torch.library.opcheck(torch.ops.dynamicrad.norm_rotary_pooled.default, args)
        assert all(status == "SUCCESS" for status in result.values()), result
    # x in [batch, heads, tokens, head_dim] memory (a transposed view)
    xt = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert not xt.is_contiguous()
    out, pooled = norm_rotary_pooled(xt, weight, 1e-6, cos, sin, "hunyuan_video", rotated, 8, 3)
    assert torch.equal(out, wrapped[0]) and torch.equal(pooled, wrapped[1])
    xw, ww, cw, sw, _ = _pooled_case("wan", torch.bfloat16, shape=(2, 19, 2, 8), rotated=-1)
    result = torch.library.opcheck(torch.ops.dynamicrad.norm_rotary_pooled.default,
                                   (xw, ww, 1e-6, cw, sw, "wan", -1, 4, 5))
    assert all(status == "SUCCESS" for status in result.values()), result


def test_norm_rotary_pooled_torch_compile_fullgraph():
    from dynamicrad.ops import norm_rotary_pooled

    x, weight, cos, sin, rotated = _pooled_case("hunyuan_video", torch.float32, shape=(2, 37, 3, 16))

    def fn(x):
        out, pooled = norm_rotary_pooled(x * 1.5, weight, 1e-6, cos, sin, "hunyuan_video", rotated, 8, 4)
        return out + 1.0, pooled * 2.0

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got, want = compiled(x), fn(x)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert got[1].shape == (2, 3, 4, 16)
    explanation = torch._dynamo.explain(fn)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    torch._dynamo.reset()


@pytest.mark.parametrize("style", ["wan", "hunyuan_video"])
def test_norm_rotary_pooled_errors(style):
    from dynamicrad.ops import norm_rotary_pooled

    x, weight, cos, sin, rotated = _pooled_case(style, torch.float32)  # 37 tokens
    for pool_block, pooled_blocks in [(8, 0), (8, 6), (8, -1), (37, 2), (1, 38)]:
        with pytest.raises(ValueError, match=r"^pooled_blocks"):
            norm_rotary_pooled(x, weight, 1e-6, cos, sin, style, rotated, pool_block, pooled_blocks)
    for pool_block in (0, -1, -8):
        with pytest.raises(ValueError, match=r"^pool_block"):
            norm_rotary_pooled(x, weight, 1e-6, cos, sin, style, rotated, pool_block, 1)
    # norm_rotary's own checks still apply
    with pytest.raises(ValueError, match="eps"):
        norm_rotary_pooled(x, weight, -1.0, cos, sin, style, rotated, 8, 5)
    with pytest.raises(ValueError, match="rotated_tokens"):
        norm_rotary_pooled(x, weight, 1e-6, cos, sin, style, 38, 8, 5)


def _pooled_means(q: torch.Tensor, k: torch.Tensor, blocks: int) -> tuple:
    return _sequential_block_means(q, BLOCK, blocks), _sequential_block_means(k, BLOCK, blocks)


def _blocky_qkv(batch: int, tokens: int, dtype, seed: int) -> tuple:
    """q, k, v with a strong component shared by the tokens of each block: block scores then differ
    enough that dynamic-threshold layouts follow them (with qkv()'s inputs they are the prior's)."""
    g = torch.Generator().manual_seed(seed)
    blocks = math.ceil(tokens / BLOCK)
    out = []
    for _ in range(3):
        means = 2.0 * torch.randn(batch, blocks, HEADS, HEAD_DIM, generator=g)
        t = means.repeat_interleave(BLOCK, 1)[:, :tokens] + torch.randn(batch, tokens, HEADS, HEAD_DIM, generator=g)
        out.append(t.to(dtype))
    return tuple(out)


def _same_layout(a, b) -> bool:
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("geometry_name", sorted(GEOMETRIES))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("mode", ["static-ratio", "dynamic-threshold"])
def test_sparse_attention_with_pooled_is_the_same_bits_and_layout(mode, dtype, geometry_name):
    """Block means of the first P blocks given (by hand, with pooling's arithmetic): the same output,
    lse and layout as selection pooling every block itself; P = every block (the short last one
    included) too. Other means change the layout, so the comparison means something."""
    g = make_geometry(geometry_name)
    prior, sel = selection_for(mode, g)
    engine = Engine(g, prior=prior, slots=1)
    q, k, v = _blocky_qkv(2, g.tokens, dtype, seed=9)
    blocks = math.ceil(g.tokens / BLOCK)
    want_out, want_lse = dynamicrad.sparse_attention(q, k, v, engine, sel)
    want_layout, want_kept = engine.layout(0), engine.kept(0)
    assert 0 < want_kept[0] < want_kept[1], "the layout must be sparse for this test to mean anything"
    for pooled_blocks in (1, 3, blocks - 1, blocks):
        pooled = _pooled_means(q, k, pooled_blocks)
        out, lse = dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=pooled, pool_block=BLOCK)
        assert torch.equal(out, want_out) and torch.equal(lse, want_lse), pooled_blocks
        assert _same_layout(engine.layout(0), want_layout), pooled_blocks
        assert engine.kept(0) == want_kept
    q2, k2, _ = _blocky_qkv(2, g.tokens, dtype, seed=4)
    dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=_pooled_means(q2, k2, blocks), pool_block=BLOCK)
    assert not _same_layout(engine.layout(0), want_layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sparse_attention_with_norm_rotary_pooled_means(dtype):
    """The intended pipeline: Q and K from norm_rotary_pooled (style hunyuan_video, the text tokens
    not rotated), its block means handed to selection: the same bits as without them."""
    from dynamicrad.ops import norm_rotary_pooled

    g = make_geometry("text")  # 200 video + 13 text tokens: 6 whole blocks of video tokens
    prior, sel = selection_for("dynamic-threshold", g)
    engine = Engine(g, prior=prior)
    q0, k0, v = _blocky_qkv(2, g.tokens, dtype, seed=10)
    gen = torch.Generator().manual_seed(10)
    weight_q = (1 + 0.3 * torch.randn(HEAD_DIM, generator=gen)).to(dtype)
    weight_k = (1 + 0.3 * torch.randn(HEAD_DIM, generator=gen)).to(dtype)
    video = g.tokens - 13
    # real rotary tables (slow angles, each entry repeated for its pair): the blocks stay distinct
    angles = torch.arange(video, dtype=torch.float32)[:, None] * (0.02 * torch.rand(HEAD_DIM // 2, generator=gen))
    cos, sin = angles.cos().repeat_interleave(2, 1), angles.sin().repeat_interleave(2, 1)
    pooled_blocks = video // BLOCK
    q, pq = norm_rotary_pooled(q0, weight_q, 1e-6, cos, sin, "hunyuan_video", video, BLOCK, pooled_blocks)
    k, pk = norm_rotary_pooled(k0, weight_k, 1e-6, cos, sin, "hunyuan_video", video, BLOCK, pooled_blocks)
    assert torch.equal(pq, _sequential_block_means(q, BLOCK, pooled_blocks))
    want_out, want_lse = dynamicrad.sparse_attention(q, k, v, engine, sel)
    want_layout, want_kept = engine.layout(0), engine.kept(0)
    assert 0 < want_kept[0] < want_kept[1]
    out, lse = dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq, pk), pool_block=BLOCK)
    assert torch.equal(out, want_out) and torch.equal(lse, want_lse)
    assert _same_layout(engine.layout(0), want_layout)
    assert engine.kept(0) == want_kept
    # the means matter here: q's and k's swapped give another layout
    dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pk, pq), pool_block=BLOCK)
    assert not _same_layout(engine.layout(0), want_layout)


def test_sparse_attention_uses_the_given_means():
    """The means given are what selection scores (not recomputed from q and k): the means of other
    q, k for every block give the layout those other q, k select; a perturbed first block mean
    changes the layout. (static-ratio: its layouts follow the scores; the dynamic-threshold ones of
    this tiny geometry are the prior's alone.)"""
    g = make_geometry("odd")
    prior, sel = selection_for("static-ratio", g)
    engine = Engine(g, prior=prior)
    q, k, v = qkv(1, g.tokens, torch.float32, seed=3)
    q2, k2, _ = qkv(1, g.tokens, torch.float32, seed=4)
    blocks = math.ceil(g.tokens / BLOCK)

    def same(a, b):
        return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    dynamicrad.sparse_attention(q, k, v, engine, sel)
    own = engine.layout(0)
    dynamicrad.sparse_attention(q2, k2, v, engine, sel)
    other = engine.layout(0)
    assert not same(own, other), "pick seeds whose layouts differ"
    dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=_pooled_means(q2, k2, blocks), pool_block=BLOCK)
    assert same(engine.layout(0), other)
    # the first three blocks' means from the other q, k, the rest pooled from q, k: neither layout
    pq, pk = _pooled_means(q2, k2, 3)
    dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq, pk), pool_block=BLOCK)
    mixed = engine.layout(0)
    assert not same(mixed, own) and not same(mixed, other)


def test_sparse_attention_pooled_opcheck_and_compile():
    from dynamicrad.ops import norm_rotary_pooled

    g = make_geometry("odd")
    prior, sel = selection_for("dynamic-threshold", g)
    engine = Engine(g, prior=prior)
    q, k, v = qkv(2, g.tokens, torch.float32, seed=5)
    pq, pk = _pooled_means(q, k, 4)
    result = torch.library.opcheck(torch.ops.dynamicrad.sparse_attention.default,
                                   _op_args(engine, sel, q, k, v) + (pq, pk, BLOCK))
    assert all(status == "SUCCESS" for status in result.values()), result

    gen = torch.Generator().manual_seed(6)
    weight = (1 + 0.3 * torch.randn(HEAD_DIM, generator=gen))
    cos, sin = torch.randn(g.tokens, HEAD_DIM, generator=gen), torch.randn(g.tokens, HEAD_DIM, generator=gen)

    def fn(q, k, v):
        q, pq = norm_rotary_pooled(q, weight, 1e-6, cos, sin, "hunyuan_video", -1, BLOCK, 6)
        k, pk = norm_rotary_pooled(k, weight, 1e-6, cos, sin, "hunyuan_video", -1, BLOCK, 6)
        out, lse = dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq, pk), pool_block=BLOCK)
        return out * 2.0, lse

    def unpooled(q, k, v):
        q = dynamicrad.norm_rotary(q, weight, 1e-6, cos, sin, "hunyuan_video")
        k = dynamicrad.norm_rotary(k, weight, 1e-6, cos, sin, "hunyuan_video")
        out, lse = dynamicrad.sparse_attention(q, k, v, engine, sel)
        return out * 2.0, lse

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got, want = compiled(q, k, v), unpooled(q, k, v)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    explanation = torch._dynamo.explain(fn)(q, k, v)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    torch._dynamo.reset()


def test_sparse_attention_pooled_errors(setup):
    engine, sel, q, k, v = setup  # "odd": batch 1, 210 tokens, 7 blocks, 2 heads of 32
    pq, pk = _pooled_means(q, k, 3)
    bad_shapes = {
        "heads": lambda t: t[:, :1].contiguous(),
        "head_dim": lambda t: t[..., :16].contiguous(),
        "batch": lambda t: torch.cat([t, t]),
        "3-d": lambda t: t[0],
    }
    for name, bad in bad_shapes.items():
        with pytest.raises(ValueError, match=r"^pooled_q"):
            dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(bad(pq), pk), pool_block=BLOCK)
        if name != "3-d":  # a 3-d pooled_q's block count is unknown: pooled_k's mismatch is then reported as pooled_q
            with pytest.raises(ValueError, match=r"^pooled_k"):
                dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq, bad(pk)), pool_block=BLOCK)
    # block counts of q and k differ
    with pytest.raises(ValueError, match=r"^pooled_k"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq, _pooled_means(q, k, 2)[1]), pool_block=BLOCK)
    with pytest.raises(ValueError, match=r"^pooled_q"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq.half(), pk), pool_block=BLOCK)
    with pytest.raises(ValueError, match=r"^pooled_k"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq, pk.half()), pool_block=BLOCK)
    with pytest.raises(ValueError, match=r"^pooled_q"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq.double(), pk), pool_block=BLOCK)
    for only in ((pq, None), (None, pk)):
        with pytest.raises(ValueError, match=r"pooled_q, pooled_k"):
            dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=only, pool_block=BLOCK)
    # more blocks than the engine's 7
    pq8, pk8 = (torch.cat([t, t, t[:, :, :2]], dim=2) for t in (pq, pk))
    assert pq8.shape[2] == 8
    with pytest.raises(ValueError, match=r"pooled_blocks"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq8, pk8), pool_block=BLOCK)
    # means over other blocks than the engine's (or no block size given): refused, nothing selected
    for pool_block in (0, BLOCK // 2, 2 * BLOCK):
        with pytest.raises(ValueError, match=r"^pool_block"):
            dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq, pk), pool_block=pool_block)
    with pytest.raises(ValueError, match=r"^pool_block"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(pq, pk))
    # non-finite means
    nan_q = pq.clone()
    nan_q[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"^pooled_q"):
        dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=(nan_q, pk), pool_block=BLOCK)
    # nothing was selected by the failed calls
    with pytest.raises(ValueError, match="^slot: 0"):
        engine.kept(0)


# ---- dense_attention: every block pair on the engine's kernels (dense_backend="dynamicrad") -------
def _sdpa64(q, k, v, scale=None):
    """torch's SDPA in float64 on [batch, tokens, heads, head_dim] inputs (transposed to its
    [batch, heads, tokens, head_dim] and back)."""
    q, k, v = (t.double().transpose(1, 2) for t in (q, k, v))
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)


@pytest.mark.parametrize("geometry_name", sorted(GEOMETRIES))
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_dense_attention_matches_sdpa(dtype, batch, geometry_name, helpers):
    """dynamicrad.dense_attention is dense attention whatever the engine's (sparse) prior: float64
    SDPA within fp32 relative error 1e-5, the lse the float64 log-sum-exp; short last block, text
    suffix, batch 1 and 2; no select needed."""
    g = make_geometry(geometry_name)
    assert g.tokens % BLOCK != 0
    prior, sel = selection_for("static-ratio", g)
    engine = Engine(g, prior=prior, slots=1)
    q, k, v = qkv(batch, g.tokens, dtype, seed=31)

    out, lse = dynamicrad.dense_attention(q, k, v, engine)
    assert out.dtype == dtype and out.shape == q.shape and out.is_contiguous()
    assert lse.dtype == torch.float32 and lse.shape == (batch, HEADS, g.tokens)
    want = _sdpa64(q, k, v)
    ref_out, ref_lse = reference(q, k, v)
    torch.testing.assert_close(want, ref_out, atol=1e-12, rtol=1e-12)  # the two float64 references agree
    if dtype == torch.float32:
        assert helpers.rel_err(out, want) <= 1e-5
    torch.testing.assert_close(out.double(), want, **TOL[dtype])
    torch.testing.assert_close(lse.double(), ref_lse, **LSE_TOL[dtype])
    with pytest.raises(ValueError, match="^slot: 0"):
        engine.kept(0)  # the dense call selected nothing

    # The comparison can fail: sparse attention with this engine's prior and selection is far off.
    sparse, _ = dynamicrad.sparse_attention(q, k, v, engine, sel)
    kept, total = engine.kept(0)
    assert kept < total
    assert (sparse.double() - want).abs().max() > 10 * TOL[dtype]["atol"]


def test_dense_attention_is_bitwise_full_layout_sparse_attention():
    """Every block pair kept by selection (a dense prior, keep ratio 1) gives the same bits as the
    dense path, which needs neither; so does an engine with a sparse prior."""
    g = make_geometry("text")
    full = Engine(g, prior={"gamma": 16.0, "theta_m": 0.0, "theta_c": 0.0})
    prior, _ = selection_for("dynamic-threshold", g)
    other = Engine(g, prior=prior)
    for batch in (2, 1):
        for dtype in (torch.float32, torch.bfloat16):
            q, k, v = qkv(batch, g.tokens, dtype, seed=32)
            via_layout = dynamicrad.sparse_attention(q, k, v, full, Selection(mode="static-ratio", r_near=1.0,
                                                                                r_far=1.0))
            kept, total = full.kept(0)
            assert kept == total
            for engine in (full, other):
                out, lse = dynamicrad.dense_attention(q, k, v, engine)
                assert torch.equal(out, via_layout[0]) and torch.equal(lse, via_layout[1])


def test_engine_attend_dense_writes_out_and_lse():
    """Engine.attend_dense writes into the given tensors (lse optional), the operator's bits; the
    output may be another float dtype than the inputs."""
    g = make_geometry("text")
    prior, _ = selection_for("static-ratio", g)
    engine = Engine(g, prior=prior)
    q, k, v = qkv(2, g.tokens, torch.float32, seed=33)
    want_out, want_lse = dynamicrad.dense_attention(q, k, v, engine)
    out = torch.full_like(q, float("nan"))
    lse = torch.full((2, HEADS, g.tokens), float("nan"))
    engine.attend_dense(q, k, v, out, lse)
    assert torch.equal(out, want_out) and torch.equal(lse, want_lse)
    out2 = torch.full_like(q, float("nan"))
    engine.attend_dense(q, k, v, out2)
    assert torch.equal(out2, want_out)
    out_bf16 = torch.empty_like(q, dtype=torch.bfloat16)
    engine.attend_dense(q, k, v, out_bf16)
    torch.testing.assert_close(out_bf16.double(), _sdpa64(q, k, v), **TOL[torch.bfloat16])
    with pytest.raises(ValueError, match="^lse"):
        engine.attend_dense(q, k, v, out, torch.empty(2, HEADS, g.tokens - 1))
    with pytest.raises(ValueError, match="^out"):
        engine.attend_dense(q, k, v, out[:, :-1].contiguous())
    with pytest.raises(ValueError, match="^out: must be contiguous"):
        engine.attend_dense(q, k, v, out.transpose(1, 2).contiguous().transpose(1, 2))


def test_dense_attention_scale_option(helpers):
    g = make_geometry("odd")
    engine = Engine(g, scale=0.5)
    q, k, v = qkv(1, g.tokens, torch.float32, seed=34)
    out, lse = dynamicrad.dense_attention(q, k, v, engine)
    assert helpers.rel_err(out, _sdpa64(q, k, v, scale=0.5)) <= 1e-5
    assert helpers.rel_err(out, _sdpa64(q, k, v)) > 1e-3
    torch.testing.assert_close(lse.double(), reference(q, k, v, scale=0.5)[1], **LSE_TOL[torch.float32])


def test_dense_attention_non_contiguous_inputs(helpers):
    g = make_geometry("odd")
    engine = Engine(g)
    gen = torch.Generator().manual_seed(35)
    q, k, v = (torch.randn(2, HEADS, g.tokens, HEAD_DIM, generator=gen).transpose(1, 2) for _ in range(3))
    assert not q.is_contiguous()
    out, _ = dynamicrad.dense_attention(q, k, v, engine)
    assert helpers.rel_err(out, _sdpa64(q, k, v)) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_dense_attention_opcheck(dtype):
    g = make_geometry("text")
    engine = Engine(g)
    q, k, v = qkv(2, g.tokens, dtype, seed=36)
    result = torch.library.opcheck(torch.ops.dynamicrad.dense_attention.default, (q, k, v, engine.handle))
    assert result and all(status == "SUCCESS" for status in result.values()), result


def test_dense_attention_torch_compile_fullgraph_matches_eager():
    g = make_geometry("text")
    engine = Engine(g)
    q, k, v = qkv(2, g.tokens, torch.float32, seed=37)

    def fn(q, k, v):
        out, lse = dynamicrad.dense_attention(q * 1.5, k, v, engine)
        return out.sum(dim=-1) + 1.0, lse

    _expect_one_graph_like_eager(fn, q, k, v)


def test_dense_attention_errors(setup):
    engine, _, q, k, v = setup  # "odd": batch 1, 210 tokens, 2 heads of 32
    with pytest.raises(ValueError, match=r"^q: has 209 tokens.*has 210"):
        dynamicrad.dense_attention(q[:, :-1].contiguous(), k[:, :-1].contiguous(), v[:, :-1].contiguous(), engine)
    with pytest.raises(ValueError, match=r"^q: .*heads"):
        dynamicrad.dense_attention(q[:, :, :1].contiguous(), k[:, :, :1].contiguous(), v[:, :, :1].contiguous(),
                                   engine)
    with pytest.raises(ValueError, match=r"^k: .*tokens"):
        dynamicrad.dense_attention(q, k[:, :-3].contiguous(), v, engine)
    with pytest.raises(ValueError, match=r"^v: .*head_dim"):
        dynamicrad.dense_attention(q, k, v[..., :16].contiguous(), engine)
    with pytest.raises(ValueError, match=r"^k: shape \[2, 210, 2, 32\]"):
        dynamicrad.dense_attention(q, torch.cat([k, k]), v, engine)
    with pytest.raises(ValueError, match=r"^q: dtype torch.float64"):
        dynamicrad.dense_attention(q.double(), k.double(), v.double(), engine)
    with pytest.raises(ValueError, match="share a dtype"):
        dynamicrad.dense_attention(q, k.bfloat16(), v, engine)
    args = (q, k, v, engine.handle)
    engine.close()
    with pytest.raises(ValueError, match="engine: closed"):
        dynamicrad.dense_attention(q, k, v, engine)
    with pytest.raises(ValueError, match="not a live engine handle"):
        torch.ops.dynamicrad.dense_attention(*args)


def test_dense_attention_not_four_dimensional(setup):
    """A 3-d q is rejected naming q, as sparse_attention does (test_not_four_dimensional)."""
    engine, _, q, k, v = setup
    with pytest.raises(ValueError, match=r"^q: expected \[batch, tokens, heads, head_dim\]"):
        dynamicrad.dense_attention(q[0], k[0], v[0], engine)
    out = torch.empty_like(q)
    with pytest.raises(ValueError, match=r"^q: expected \[batch, tokens, heads, head_dim\]"):
        engine.attend_dense(q[0], k[0], v[0], out)


def test_rotary_tables_in_another_layout_are_refused():
    """Wan's tables are [1, tokens, 1, head_dim] or [tokens, head_dim]; a transposed or reshaped table
    holds as many values but would be read in the wrong order."""
    x, weight, cos, sin = _norm_rotary_inputs(torch.float32, shape=(1, 9, 2, 8))
    flat = cos[0, :, 0]
    for bad in (flat.T.contiguous(), flat.reshape(8, 9), flat.reshape(1, 8, 1, 9), flat.reshape(9, 1, 8)):
        with pytest.raises(ValueError, match=r"^cos, sin: expected \[1, 9, 1, 8\] or \[9, 8\]"):
            dynamicrad.rotary(x, bad, sin)
        with pytest.raises(ValueError, match=r"^cos, sin: expected"):
            dynamicrad.norm_rotary(x, weight, 1e-6, cos, bad)


@pytest.mark.parametrize("which", ["cos", "sin", "weight"])
def test_a_meta_table_or_weight_is_refused_not_garbage(which):
    """torch sends a call with any meta input to the operator's fake implementation: a real x with a
    meta table or norm weight (e.g. a weight offloaded by accelerate) must raise, not return
    uninitialised memory."""
    x, weight, cos, sin = _norm_rotary_inputs(torch.float32, shape=(1, 9, 2, 8))
    args = {"cos": cos, "sin": sin, "weight": weight}
    args[which] = args[which].to("meta")
    with pytest.raises(ValueError, match=rf"must be on the input's device cpu, got .*meta"):
        dynamicrad.norm_rotary(x, args["weight"], 1e-6, args["cos"], args["sin"])
    if which != "weight":
        with pytest.raises(ValueError, match=r"must be on the input's device cpu"):
            dynamicrad.rotary(x, args["cos"], args["sin"])
        hx, hw, hcos, hsin = _hunyuan_inputs(torch.float32, (1, 6, 2, 8), 4)
        hargs = {"cos": hcos, "sin": hsin}
        hargs[which] = hargs[which].to("meta")
        from dynamicrad.ops import norm_rotary_pooled
        with pytest.raises(ValueError, match=r"must be on the input's device cpu"):
            norm_rotary_pooled(hx, hw, 1e-6, hargs["cos"], hargs["sin"], "hunyuan_video", 4, 2, 1)


def test_meta_pooled_means_are_refused(setup):
    engine, sel, q, k, v = setup
    pq, pk = _pooled_means(q, k, 3)
    for pooled in ((pq.to("meta"), pk), (pq, pk.to("meta"))):
        with pytest.raises(ValueError, match=r"^pooled_q, pooled_k: must be on the input's device cpu"):
            dynamicrad.sparse_attention(q, k, v, engine, sel, pooled=pooled, pool_block=BLOCK)
    # all-meta inputs are a shape computation and stay one
    out, lse = dynamicrad.sparse_attention(*(t.to("meta") for t in (q, k, v)), engine, sel)
    assert out.device.type == "meta" and out.shape == q.shape


def test_slot_beyond_a_c_int_is_refused_not_wrapped(setup):
    engine, sel, q, k, v = setup
    for slot in (2**32 + 1, -(2**31) - 1):
        with pytest.raises(ValueError, match=r"^slot = .*outside the range of a 32-bit integer"):
            dynamicrad.sparse_attention(q, k, v, engine, sel, slot=slot)
        with pytest.raises(ValueError, match=r"^slot = "):
            engine.kept(slot)
    with pytest.raises(TypeError, match=r"^slot = 1.0: must be an integer"):
        engine.kept(1.0)
