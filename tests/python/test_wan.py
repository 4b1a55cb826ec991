"""dynamicrad.enable / disable on a tiny random WanTransformer3DModel (3 blocks, 2 heads of 64,
latents 4 x 5 x 16 x 16 -> 5 x 8 x 8 = 320 video tokens = 10 blocks of 32)."""

from __future__ import annotations

import re

import types

import pytest
import torch

import dynamicrad
from dynamicrad import DynamicRadConfig
from dynamicrad.integrations.wan import WanSelfAttentionProcessor

SPARSE = dict(warmup_steps=0, block_size=32, regime="high")
# 3 x 8 x 16 tokens: with block 32 the 3D tiles are 1 x 4 x 8, so the tiled order really differs from
# raster (with 8 tokens a row, a raster block of 32 would already be a 1 x 4 x 8 tile).
WIDE = dict(frames=3, height=16, width=32)
# 4 x 5 x 9 tokens: partial tiles at the bottom and right edges, 180 tokens (last block short).
PARTIAL = dict(frames=4, height=10, width=18)


def _forward(model, inputs, timestep=None):
    kw = dict(inputs)
    if timestep is not None:
        kw["timestep"] = torch.full_like(kw["timestep"], float(timestep))
    with torch.no_grad():
        return model(**kw).sample


# ---- (1) density one --------------------------------------------------------------------------
def test_density_one_matches_stock(wan, wan_inputs, helpers):
    x = wan_inputs()
    ref = _forward(wan, x)
    state = dynamicrad.enable(wan, **helpers.DENSITY_ONE)
    assert wan.dynamicrad_state is state and state.family == "wan" and state.num_layers == 3
    out = _forward(wan, x)
    assert helpers.rel_err(out, ref) < 1e-5
    reports = state.report()
    assert [r.layer for r in reports] == [0, 1, 2]
    for r in reports:
        assert not r.dense, "density one still runs the sparse path"
        assert r.sparsity == 0.0 and r.kept == r.total == 2 * 10 * 10  # heads * blocks^2
    assert state.mean_sparsity() == 0.0
    assert "sparsity   0.0%" in state.summary()


def test_config_object_equals_keywords(wan, wan_inputs, helpers):
    x = wan_inputs()
    state = dynamicrad.enable(wan, DynamicRadConfig(**SPARSE))
    a = _forward(wan, x)
    dynamicrad.disable(wan)
    dynamicrad.enable(wan, **SPARSE)
    b = _forward(wan, x)
    assert torch.equal(a, b)
    assert state.config.regime == "high"
    dynamicrad.disable(wan)
    with pytest.raises(ValueError, match="either a DynamicRadConfig or keyword"):
        dynamicrad.enable(wan, DynamicRadConfig(), regime="high")


def test_fused_qkv_projections_density_one(wan, wan_inputs, helpers):
    x = wan_inputs()
    ref = _forward(wan, x)
    for block in wan.blocks:
        block.attn1.fuse_projections()
    assert wan.blocks[0].attn1.fused_projections
    assert helpers.rel_err(_forward(wan, x), ref) < 1e-5
    dynamicrad.enable(wan, **helpers.DENSITY_ONE)
    assert helpers.rel_err(_forward(wan, x), ref) < 1e-5


# ---- (2) default config: sparse, bounded error ---------------------------------------------------
def test_default_config_high_regime(wan, wan_inputs, helpers):
    x = wan_inputs()
    ref = _forward(wan, x)
    state = dynamicrad.enable(wan, **SPARSE)
    assert state.config.dense_layers == 1 and state.config.mode is None
    out = _forward(wan, x)
    err = helpers.rel_err(out, ref)
    assert 0 < err < 0.05
    assert torch.isfinite(out).all()
    reports = state.report()
    assert len(reports) == 3
    assert reports[0].dense and reports[0].sparsity == 0.0, "dense_layers=1: layer 0 stays dense"
    for r in reports[1:]:
        assert not r.dense and 0 < r.kept < r.total and r.step == 0
    assert state.mean_sparsity() > 0
    assert state.mean_sparsity() == pytest.approx(sum(r.sparsity for r in reports[1:]) / 2)
    assert "layer   0: dense" in state.summary()


@pytest.mark.parametrize("mode", ["static-ratio", "dynamic-threshold"])
@pytest.mark.parametrize("regime", ["low", "mid", "high"])
def test_every_lut_row_runs(wan, wan_inputs, helpers, regime, mode):
    x = wan_inputs()
    ref = _forward(wan, x)
    state = dynamicrad.enable(wan, warmup_steps=0, dense_layers=0, block_size=32, regime=regime, mode=mode)
    out = _forward(wan, x)
    assert torch.isfinite(out).all()
    assert helpers.rel_err(out, ref) < 0.1
    assert all(not r.dense and 0 < r.kept <= r.total for r in state.report())


def test_dense_layers(wan, wan_inputs):
    x = wan_inputs()
    state = dynamicrad.enable(wan, **{**SPARSE, "dense_layers": 2})
    _forward(wan, x)
    assert [r.dense for r in state.report()] == [True, True, False]
    dynamicrad.disable(wan)
    state = dynamicrad.enable(wan, **{**SPARSE, "dense_layers": 0})
    _forward(wan, x)
    assert [r.dense for r in state.report()] == [False, False, False]
    dynamicrad.disable(wan)
    state = dynamicrad.enable(wan, **{**SPARSE, "dense_layers": 3})  # every layer (more: test_enable_checks)
    _forward(wan, x)
    assert [r.dense for r in state.report()] == [True, True, True]
    assert state.mean_sparsity() == 0.0


def test_overrides_change_the_layout(wan, wan_inputs):
    """selection overrides reach the engine: keeping fewer candidates keeps fewer blocks."""
    x = wan_inputs()
    kept = []
    for r_near in (1.0, 0.05):
        state = dynamicrad.enable(wan, warmup_steps=0, dense_layers=0, block_size=32, regime="mid",
                                  mode="static-ratio", selection={"r_near": r_near, "r_far": r_near})
        _forward(wan, x)
        kept.append(sum(r.kept for r in state.report()))
        dynamicrad.disable(wan)
    assert kept[1] < kept[0]


# ---- (3) disable ----------------------------------------------------------------------------------
@pytest.mark.parametrize("token_order", ["raster", "tiled3d"])
def test_disable_restores_everything(wan, wan_inputs, helpers, token_order):
    x = wan_inputs(**WIDE)
    ref = _forward(wan, x)
    processors = helpers.processor_snapshot(wan)
    hooks = helpers.hook_snapshot(wan)
    state = dynamicrad.enable(wan, **SPARSE, token_order=token_order)
    assert helpers.hook_snapshot(wan) != hooks
    for i, block in enumerate(wan.blocks):
        assert isinstance(block.attn1.processor, WanSelfAttentionProcessor)
        assert block.attn1.processor.layer == i
        assert block.attn2.processor is processors[f"blocks.{i}.attn2"], "cross-attention stays stock"
    assert not torch.equal(_forward(wan, x), ref)
    dynamicrad.disable(wan)
    assert torch.equal(_forward(wan, x), ref)
    after = helpers.processor_snapshot(wan)
    assert after.keys() == processors.keys()
    for name, proc in processors.items():
        assert after[name] is proc, name
    assert helpers.hook_snapshot(wan) == hooks
    assert getattr(wan, "dynamicrad_state", None) is None
    assert state._engines == {}
    # enabling again works after disable
    dynamicrad.enable(wan, **SPARSE)
    assert not torch.equal(_forward(wan, x), ref)


# ---- (4) token order ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [WIDE, PARTIAL], ids=["full-tiles", "partial-tiles"])
@pytest.mark.parametrize("batch", [1, 2])
def test_tiled3d_density_one(wan, wan_inputs, helpers, shape, batch):
    x = wan_inputs(batch=batch, **shape)
    ref = _forward(wan, x)
    dynamicrad.enable(wan, **helpers.DENSITY_ONE, token_order="tiled3d")
    assert helpers.rel_err(_forward(wan, x), ref) < 1e-5


def test_tiled3d_during_warmup(wan, wan_inputs, helpers):
    """Warm-up steps run the stock processors on permuted tokens with permuted rotary tables:
    attention is permutation-equivariant, so only rounding differs."""
    x = wan_inputs(**PARTIAL)
    ref = _forward(wan, x)
    state = dynamicrad.enable(wan, warmup_steps=3, block_size=32, token_order="tiled3d")
    out = _forward(wan, x)
    assert all(r.dense for r in state.report())
    assert helpers.rel_err(out, ref) < 1e-5


def test_tiled3d_new_resolution_gets_its_own_permutation(wan, wan_inputs, helpers):
    """One state, two latent sizes in the tiled order: each call permutes with its own geometry's
    permutation."""
    xs = [wan_inputs(**WIDE), wan_inputs(**PARTIAL)]
    refs = [_forward(wan, x) for x in xs]
    dynamicrad.enable(wan, **helpers.DENSITY_ONE, token_order="tiled3d")
    for x, ref in zip(xs + xs, refs + refs):
        assert helpers.rel_err(_forward(wan, x), ref) < 1e-5


def test_tiled3d_permutation_is_applied(wan, wan_inputs, helpers):
    x = wan_inputs(**WIDE)
    ref = _forward(wan, x)
    outs, states = {}, {}
    for order in ("raster", "tiled3d"):
        states[order] = dynamicrad.enable(wan, **SPARSE, mode="static-ratio", dense_layers=0, token_order=order)
        outs[order] = _forward(wan, x)
        states[order].kept_total = [(r.kept, r.total) for r in states[order].report()]
        dynamicrad.disable(wan)
    assert not torch.equal(outs["raster"], outs["tiled3d"])
    assert helpers.rel_err(outs["raster"], outs["tiled3d"]) > 1e-4
    assert helpers.rel_err(outs["tiled3d"], ref) < 0.05, "the tiled order is undone at the output"
    assert all(k < t for k, t in states["tiled3d"].kept_total)


def test_tiled3d_rejects_per_token_timesteps(wan, wan_inputs):
    dynamicrad.enable(wan, **SPARSE, token_order="tiled3d")
    x = wan_inputs()
    x["timestep"] = torch.full((1, 320), 500.0)
    with pytest.raises(ValueError, match="token_order"):
        _forward(wan, x)


def test_positional_arguments(wan, wan_inputs, helpers):
    x = wan_inputs()
    ref = _forward(wan, x)
    state = dynamicrad.enable(wan, **helpers.DENSITY_ONE)
    with torch.no_grad():
        out = wan(x["hidden_states"], x["timestep"], x["encoder_hidden_states"], return_dict=False)[0]
    assert helpers.rel_err(out, ref) < 1e-5
    assert all(not r.dense for r in state.report())


def test_bfloat16_model(make_wan, wan_inputs, helpers):
    model = make_wan().to(torch.bfloat16)
    x = {k: v.to(torch.bfloat16) for k, v in wan_inputs().items()}
    ref = _forward(model, x)
    dynamicrad.enable(model, **helpers.DENSITY_ONE)
    out = _forward(model, x)
    assert out.dtype == torch.bfloat16
    assert helpers.rel_err(out, ref) < 1e-2
    dynamicrad.disable(model)
    state = dynamicrad.enable(model, **SPARSE)
    out = _forward(model, x)
    assert torch.isfinite(out).all() and helpers.rel_err(out, ref) < 0.05
    assert state.mean_sparsity() > 0


def _write_lut(path, row_prior, row_selection):
    rows = []
    for regime in ("low", "mid", "high"):
        for mode in ("static-ratio", "dynamic-threshold"):
            entry = dynamicrad.lut_entry(regime, mode)
            sel = {"r_near": entry.selection.r_near, "r_far": entry.selection.r_far} if mode == "static-ratio" \
                else {"tau_near": entry.selection.tau_near, "tau_far": entry.selection.tau_far}
            prior = dict(entry.prior)
            if (regime, mode) == ("mid", "static-ratio"):
                prior.update(row_prior)
                sel.update(row_selection)
            rows.append({"regime": regime, "mode": mode, "prior": prior, "selection": sel})
    import json

    path.write_text(json.dumps({"format": "dynamicrad-lut", "version": 1, "rows": rows}))
    return str(path)


def test_lut_file_reaches_the_engine(wan, wan_inputs, helpers, tmp_path):
    """A LUT file whose mid/static-ratio row keeps everything gives stock output; the built-in
    row with the same overrides applied by keyword gives the same result."""
    x = wan_inputs()
    ref = _forward(wan, x)
    lut = _write_lut(tmp_path / "dense.json", {"gamma": 16.0, "theta_m": 0.0, "theta_c": 0.0},
                     {"r_near": 1.0, "r_far": 1.0})
    state = dynamicrad.enable(wan, lut=lut, warmup_steps=0, dense_layers=0, block_size=32)
    assert helpers.rel_err(_forward(wan, x), ref) < 1e-5
    assert all(r.kept == r.total for r in state.report())
    dynamicrad.disable(wan)
    lut = _write_lut(tmp_path / "sparse.json", {}, {"r_near": 0.05, "r_far": 0.05})
    state = dynamicrad.enable(wan, lut=lut, warmup_steps=0, dense_layers=0, block_size=32, regime="mid")
    sparse = _forward(wan, x)
    kept = [r.kept for r in state.report()]
    dynamicrad.disable(wan)
    state = dynamicrad.enable(wan, warmup_steps=0, dense_layers=0, block_size=32, regime="mid",
                              selection={"r_near": 0.05, "r_far": 0.05})
    assert torch.equal(_forward(wan, x), sparse)
    assert [r.kept for r in state.report()] == kept


# ---- (5) warm-up and step counting -------------------------------------------------------------------
@pytest.mark.parametrize("fused_norm", [False, True])
def test_warmup_steps(wan, wan_inputs, helpers, fused_norm):
    """Warm-up steps run the stock attention: the stock bits, or with the one-pass Q/K norm (whose
    sum of squares rounds differently) within float rounding of them."""
    x = wan_inputs()
    stock = {t: _forward(wan, x, t) for t in (900, 800, 700)}

    def stock_like(out, t):
        if fused_norm:
            return helpers.rel_err(out, stock[t]) <= 1e-6
        return torch.equal(out, stock[t])

    state = dynamicrad.enable(wan, block_size=32, regime="high", warmup_steps=2, fused_norm=fused_norm)
    assert state.step == 0
    out = _forward(wan, x, 900)
    assert state.step == 0 and stock_like(out, 900)
    assert all(r.dense for r in state.report())
    out = _forward(wan, x, 800)
    assert state.step == 1 and stock_like(out, 800)
    assert all(r.dense for r in state.report())
    out = _forward(wan, x, 700)
    assert state.step == 2 and helpers.rel_err(out, stock[700]) > 1e-4
    assert [r.dense for r in state.report()] == [True, False, False]
    assert all(r.step == 2 for r in state.report())

    # A rising timestep starts a new generation: step 0, dense again (and so reported: the last
    # generation's sparse layouts are not this step's).
    out = _forward(wan, x, 900)
    assert state.step == 0 and stock_like(out, 900)
    assert all(r.dense and r.step == 0 for r in state.report())


def test_guidance_calls_count_as_one_step(wan, wan_inputs):
    """Classifier-free guidance: two calls with one timestep are one step (the second has its own slots)."""
    x = wan_inputs()
    state = dynamicrad.enable(wan, block_size=32, regime="high", warmup_steps=1)
    stock = _forward(wan, x, 800)
    _forward(wan, x, 900)
    _forward(wan, x, 900)
    assert (state.step, state.call_in_step) == (0, 1)
    out_cond = _forward(wan, x, 800)
    assert (state.step, state.call_in_step) == (1, 0)
    out_uncond = _forward(wan, x, 800)
    assert (state.step, state.call_in_step) == (1, 1)
    assert not torch.equal(out_cond, stock)
    assert torch.equal(out_cond, out_uncond), "same inputs in both guidance branches give one result"
    _forward(wan, x, 800)  # a third call in a step reuses the last slot (refresh_interval 1)
    assert (state.step, state.call_in_step) == (1, 2)
    state.reset()
    assert (state.step, state.call_in_step) == (0, 0)
    _forward(wan, x, 100)
    assert state.step == 0


def test_a_third_call_in_a_step_takes_the_second_calls_slots(wan, wan_inputs):
    """refresh_interval 1: a third transformer call in one step selects into the second call's slots
    (the first call's layouts stay), and report() counts each slot once."""
    xa, xb = wan_inputs(seed=1), wan_inputs(seed=2)
    xb["hidden_states"] = 3.0 * xb["hidden_states"].flip(-1)
    state = dynamicrad.enable(wan, **SPARSE, dense_layers=0, mode="static-ratio", keep_layouts=True)
    first, second = [2 * layer for layer in range(3)], [2 * layer + 1 for layer in range(3)]
    alone = {}
    for name, x in (("a", xa), ("b", xb)):
        state.reset()
        _forward(wan, x, 900)
        alone[name] = (_layouts(state, first), [(r.kept, r.total) for r in state.report()])
    assert not _same_layouts(alone["a"][0], alone["b"][0]), "the two inputs select different layouts"
    state.reset()
    for x in (xa, xb, xb):
        _forward(wan, x, 900)
    assert (state.step, state.call_in_step) == (0, 2)
    assert _same_layouts(_layouts(state, first), alone["a"][0])
    assert _same_layouts(_layouts(state, second), alone["b"][0])
    assert [(r.kept, r.total) for r in state.report()] == [
        (ka + kb, ta + tb) for (ka, ta), (kb, tb) in zip(alone["a"][1], alone["b"][1])]


def test_third_call_per_step_with_refresh_is_rejected(wan, wan_inputs):
    x = wan_inputs()
    dynamicrad.enable(wan, **SPARSE, refresh_interval=2)
    _forward(wan, x, 900)
    _forward(wan, x, 900)
    with pytest.raises(ValueError, match="refresh_interval"):
        _forward(wan, x, 900)


# ---- (6) refresh interval -----------------------------------------------------------------------------
def _layouts(state, slots):
    (engine,) = state._engines.values()
    return [engine.layout(s) for s in slots]


def _same_layouts(xs, ys) -> bool:
    return all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(xs, ys))


def test_refresh_interval_reuses_layouts(make_wan, wan_inputs):
    """refresh_interval=2 selects at steps 0 and 2 and reuses step 0's layouts at step 1.

    Two models with the same weights, one refreshing every step (B) and one every second step (A),
    see the same calls. Step 1 gets very different latents, so a fresh selection picks other
    layouts: A and B agree at steps 0 and 2 (both select) and differ at step 1 (A reuses)."""
    a, b = make_wan(), make_wan()
    x0 = wan_inputs(seed=1)
    x1 = wan_inputs(seed=2)
    x1["hidden_states"] = 3.0 * x1["hidden_states"].flip(-1)
    # static-ratio: the high-motion prior leaves candidates for the selection to choose from.
    config = dict(warmup_steps=0, dense_layers=0, block_size=32, regime="high", mode="static-ratio")
    sa = dynamicrad.enable(a, **config, refresh_interval=2)
    sb = dynamicrad.enable(b, **config, refresh_interval=1)
    slots = [layer * 2 for layer in range(3)]  # the first call of each step
    outs, layouts = {"a": [], "b": []}, {"a": [], "b": []}
    for x, t in [(x0, 900), (x1, 800), (x1, 700)]:
        outs["a"].append(_forward(a, x, t))
        layouts["a"].append(_layouts(sa, slots))
        outs["b"].append(_forward(b, x, t))
        layouts["b"].append(_layouts(sb, slots[-1:]))  # B keeps only the last selected layout
    assert sa.step == sb.step == 2
    # Sanity: a fresh selection at step 1 does change the layouts.
    assert not _same_layouts(layouts["b"][1], layouts["b"][0])
    # Step 0: both select.
    assert torch.equal(outs["a"][0], outs["b"][0])
    # Step 1: A reuses step 0's layouts, so its output differs from B's.
    assert _same_layouts(layouts["a"][1], layouts["a"][0])
    assert not torch.equal(outs["a"][1], outs["b"][1])
    # Step 2: A selects again, from the same activations as B.
    assert not _same_layouts(layouts["a"][2], layouts["a"][1])
    assert _same_layouts(layouts["a"][2][-1:], layouts["b"][2])
    assert torch.equal(outs["a"][2], outs["b"][2])


def test_refresh_interval_counts_from_the_first_sparse_step(make_wan, wan_inputs):
    """With warm-up, selection happens at steps warmup, warmup + interval, ..."""
    model = make_wan()
    x0, x1 = wan_inputs(seed=1), wan_inputs(seed=2)
    state = dynamicrad.enable(model, warmup_steps=1, dense_layers=0, block_size=32, regime="high",
                              mode="static-ratio", refresh_interval=2)
    _forward(model, x0, 900)  # step 0: dense
    assert state._engines == {}
    _forward(model, x0, 800)  # step 1: selects
    first = _layouts(state, [0, 2, 4])
    _forward(model, x1, 700)  # step 2: reuses
    assert _same_layouts(_layouts(state, [0, 2, 4]), first)
    _forward(model, x1, 600)  # step 3: selects
    assert not _same_layouts(_layouts(state, [0, 2, 4]), first)


def test_batch_change_forces_a_new_selection(wan, wan_inputs, helpers):
    """A reuse step whose batch differs from the selected layout's selects again (no stale layout)."""
    x1, x2 = wan_inputs(batch=1), wan_inputs(batch=2)
    state = dynamicrad.enable(wan, **SPARSE, refresh_interval=2)
    _forward(wan, x1, 900)
    out = _forward(wan, x2, 800)  # step 1: reuse step, but the layouts were selected for batch 1
    assert state.step == 1 and out.shape[0] == 2
    assert all(r.total == 2 * 2 * 100 for r in state.report() if not r.dense)


# ---- (7) batch 2 ----------------------------------------------------------------------------------
def test_batch_two(wan, wan_inputs, helpers):
    x = wan_inputs(batch=2)
    ref = _forward(wan, x)
    state = dynamicrad.enable(wan, **helpers.DENSITY_ONE)
    assert helpers.rel_err(_forward(wan, x), ref) < 1e-5
    dynamicrad.disable(wan)

    state = dynamicrad.enable(wan, **SPARSE)
    out = _forward(wan, x)
    assert helpers.rel_err(out, ref) < 0.05
    for r in state.report()[1:]:
        assert r.total == 2 * 2 * 100 and r.kept < r.total
    # Layouts are per batch element: element 1 alone gives the same result as inside the batch.
    single = {k: v[1:2] for k, v in x.items()}
    alone = _forward(wan, single)
    torch.testing.assert_close(out[1:2], alone, atol=1e-5, rtol=1e-4)


def test_new_resolution_gets_its_own_engine(wan, wan_inputs, helpers):
    state = dynamicrad.enable(wan, **helpers.DENSITY_ONE)
    for frames, h, w in ((5, 16, 16), (3, 12, 20)):
        x = wan_inputs(frames=frames, height=h, width=w)
        out = _forward(wan, x)
        dynamicrad.disable(wan)
        ref = _forward(wan, x)
        assert helpers.rel_err(out, ref) < 1e-5
        state = dynamicrad.enable(wan, **helpers.DENSITY_ONE)
    # both geometries in one state
    _forward(wan, wan_inputs())
    _forward(wan, wan_inputs(frames=3, height=12, width=20))
    assert len(state._engines) == 2


# ---- (8) Wan2.2: two transformers --------------------------------------------------------------------
def test_wan22_pipeline_two_transformers(make_wan, wan_inputs, helpers):
    t1, t2 = make_wan(seed=0), make_wan(seed=1, num_layers=2)
    pipe = types.SimpleNamespace(transformer=t1, transformer_2=t2)
    x = wan_inputs()
    refs = [_forward(m, x) for m in (t1, t2)]
    procs = [helpers.processor_snapshot(m) for m in (t1, t2)]
    hooks = [helpers.hook_snapshot(m) for m in (t1, t2)]
    state = dynamicrad.enable(pipe, **helpers.DENSITY_ONE)
    assert t1.dynamicrad_state is state and t2.dynamicrad_state is state
    # layers are numbered across both transformers (own slots, so one never reuses the other's
    # layouts), while the dense-layer rule counts inside each transformer
    assert state.num_layers == 3 + 2
    for m, first in ((t1, 0), (t2, 3)):
        assert all(isinstance(b.attn1.processor, WanSelfAttentionProcessor) for b in m.blocks)
        assert [b.attn1.processor.layer for b in m.blocks] == list(range(first, first + len(m.blocks)))
        assert [b.attn1.processor.layer_in_model for b in m.blocks] == list(range(len(m.blocks)))
    for m, ref in zip((t1, t2), refs):
        assert helpers.rel_err(_forward(m, x), ref) < 1e-5
    with pytest.raises(ValueError, match="already enabled"):
        dynamicrad.enable(t2)
    dynamicrad.disable(pipe)
    for m, ref, p, h in zip((t1, t2), refs, procs, hooks):
        assert torch.equal(_forward(m, x), ref)
        assert all(m_p is p[n] for n, m_p in helpers.processor_snapshot(m).items())
        assert helpers.hook_snapshot(m) == h
        assert getattr(m, "dynamicrad_state", None) is None


def test_wan22_dense_layers_count_inside_each_transformer(make_wan, wan_inputs):
    """dense_layers keeps the first layers of each transformer dense (Wan2.2's second transformer
    too), not the first layers across the pipeline."""
    t1, t2 = make_wan(seed=0), make_wan(seed=1, num_layers=2)
    state = dynamicrad.enable(types.SimpleNamespace(transformer=t1, transformer_2=t2), **SPARSE, dense_layers=1)
    x = wan_inputs()
    for m in (t1, t2):
        _forward(m, x, 900)
    assert [r.dense for r in state.report()] == [True, False, False, True, False]


def test_pipeline_with_only_transformer_2(make_wan, helpers):
    t2 = make_wan()
    pipe = types.SimpleNamespace(transformer=None, transformer_2=t2)
    state = dynamicrad.enable(pipe)
    assert t2.dynamicrad_state is state
    dynamicrad.disable(pipe)
    with pytest.raises(TypeError, match="no transformer"):
        dynamicrad.enable(types.SimpleNamespace(transformer=None))


# ---- (9) bad arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, field",
    [
        (dict(regime="extreme"), "regime"),
        (dict(mode="foo"), "mode"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(warmup_steps=1.5), "warmup_steps"),
        (dict(dense_layers=-2), "dense_layers"),
        (dict(refresh_interval=0), "refresh_interval"),
        (dict(token_order="zigzag"), "token_order"),
        (dict(block_size=48), "block_size"),
        (dict(prior={"gama": 1.0}), "prior.gama"),
        (dict(selection={"r_mid": 0.5}), "selection.r_mid"),
        (dict(prior=[1.0]), "prior"),
        (dict(fused_rotary=1), "fused_rotary"),
        (dict(fused_norm="yes"), "fused_norm"),
    ],
)
def test_bad_options(wan, helpers, options, field):
    hooks = helpers.hook_snapshot(wan)
    with pytest.raises(ValueError, match=rf"^{field.replace('.', '[.]')}"):
        dynamicrad.enable(wan, **options)
    assert getattr(wan, "dynamicrad_state", None) is None
    assert helpers.hook_snapshot(wan) == hooks


def test_unknown_option_keyword(wan):
    with pytest.raises(TypeError, match="regim"):
        dynamicrad.enable(wan, regim="high")


def test_bool_refresh_interval_rejected():
    """refresh_interval=True must not pass as 1 (bool is an int in Python)."""
    with pytest.raises(ValueError, match="refresh_interval"):
        DynamicRadConfig(refresh_interval=True)


@pytest.mark.parametrize(
    "options, field, error",
    [
        (dict(lut="/nonexistent/dynamicrad-lut.json"), "dynamicrad-lut.json", OSError),
        (dict(lut_geometry="no-such-preset"), "lut_geometry", ValueError),
        (dict(prior={"gamma": -1.0}), "prior.gamma", ValueError),
        (dict(selection={"r_near": 2.0}), "selection.r_near", ValueError),
    ],
    ids=["missing-lut", "unknown-lut-geometry", "prior-value", "selection-value"],
)
def test_enable_validates_lut_and_values_eagerly(wan, options, field, error):
    """enable() checks the LUT file, lut_geometry and the prior / selection overrides at once (not at
    the first sparse step, after minutes of warm-up), naming the field; nothing stays installed."""
    with pytest.raises(error, match=re.escape(field)):
        dynamicrad.enable(wan, **options, mode="dynamic-threshold" if "lut_geometry" in options else None)
    assert getattr(wan, "dynamicrad_state", None) is None


@pytest.mark.parametrize("target", [torch.nn.Linear(4, 4), "not a model", None])
def test_unsupported_model(target):
    with pytest.raises(TypeError, match="does not support"):
        dynamicrad.enable(target)


def test_unsupported_diffusers_model():
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8,), layers_per_block=1,
                       down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",), norm_num_groups=4)
    with pytest.raises(TypeError, match="UNet2DModel"):
        dynamicrad.enable(unet)
    with pytest.raises(TypeError, match="UNet2DModel"):
        dynamicrad.enable(types.SimpleNamespace(transformer=unet))


def test_latents_not_divisible_by_patch(wan, wan_inputs):
    state = dynamicrad.enable(wan, **SPARSE)
    with pytest.raises(ValueError, match="patch"):
        _forward(wan, wan_inputs(height=15))
    with pytest.raises(ValueError, match="hidden_states"):
        _forward(wan, wan_inputs(width=17))
    assert state.video is None
    # the model still works afterwards
    assert _forward(wan, wan_inputs()).shape == (1, 4, 5, 16, 16)


def test_enable_twice(wan):
    dynamicrad.enable(wan)
    with pytest.raises(ValueError, match="already enabled"):
        dynamicrad.enable(wan)


def test_disable_not_enabled(wan):
    with pytest.raises(ValueError, match="not enabled"):
        dynamicrad.disable(wan)
    dynamicrad.enable(wan)
    dynamicrad.disable(wan)
    with pytest.raises(ValueError, match="not enabled"):
        dynamicrad.disable(wan)


def test_processor_outside_forward(wan, wan_inputs):
    dynamicrad.enable(wan, **SPARSE, dense_layers=0)
    _forward(wan, wan_inputs())  # a normal call first; its geometry must not leak
    attn = wan.blocks[1].attn1
    hidden = torch.randn(1, 320, 128)
    with pytest.raises(ValueError, match="outside the transformer's forward"):
        with torch.no_grad():
            attn(hidden)


def test_more_self_attention_calls_than_layers_are_refused(wan, wan_inputs):
    """The dispatch counts the self-attention calls of one transformer call: a call past the last
    layer (here the last block's attention run twice) is refused, not given a layer number past the
    transformer's."""
    dynamicrad.enable(wan, **SPARSE, dense_layers=0)
    attn = wan.blocks[2].attn1
    repeated = []

    def run_again(module, args, kwargs, output):
        if not repeated:
            repeated.append(True)
            module(*args, **kwargs)
        return output

    handle = attn.register_forward_hook(run_again, with_kwargs=True)
    message = "self-attention call 4 in one transformer call, but the transformer has 3 layers"
    try:
        with pytest.raises(ValueError, match=message):
            _forward(wan, wan_inputs())
    finally:
        handle.remove()
    assert repeated


def test_geometry_cleared_after_a_failing_forward(wan, wan_inputs):
    state = dynamicrad.enable(wan, **SPARSE, dense_layers=0)
    x = wan_inputs()
    x["encoder_hidden_states"] = torch.randn(1, 8, 31)  # wrong text_dim: the forward raises
    with pytest.raises(RuntimeError):
        _forward(wan, x)
    assert state.video is None
    with pytest.raises(ValueError, match="outside the transformer's forward"):
        with torch.no_grad():
            wan.blocks[1].attn1(torch.randn(1, 320, 128))


# ---- Wan image-to-video and Wan2.2 TI2V shapes ------------------------------------------------------
def test_image_to_video_transformer_density_one(make_wan, wan_inputs, helpers):
    """Wan2.1 I2V: image tokens go to cross-attention (added K/V, stock); self-attention is ours."""
    model = make_wan(image_dim=16, added_kv_proj_dim=128)
    x = wan_inputs()
    g = torch.Generator().manual_seed(5)
    x["encoder_hidden_states"] = torch.randn(1, 512, 32, generator=g)  # stock I2V expects 512 text tokens
    x["encoder_hidden_states_image"] = torch.randn(1, 6, 16, generator=g)
    ref = _forward(model, x)
    state = dynamicrad.enable(model, **helpers.DENSITY_ONE)
    assert all(b.attn2.processor is not None and not isinstance(b.attn2.processor, WanSelfAttentionProcessor)
               for b in model.blocks)
    assert helpers.rel_err(_forward(model, x), ref) < 1e-5
    assert [r.sparsity for r in state.report()] == [0.0] * 3
    dynamicrad.disable(model)
    assert torch.equal(_forward(model, x), ref)


def test_per_token_timesteps_raster(wan, wan_inputs, helpers):
    """Wan2.2 TI2V passes a timestep per token ([batch, tokens]); the raster order supports it and the
    step advances on the largest timestep."""
    x = wan_inputs()
    tokens = 5 * 8 * 8
    x["timestep"] = torch.full((1, tokens), 700.0)
    x["timestep"][:, :64] = 0.0  # the conditioning first frame
    ref = _forward(wan, x)
    state = dynamicrad.enable(wan, **helpers.DENSITY_ONE)
    assert helpers.rel_err(_forward(wan, x), ref) < 1e-5
    assert state.step == 0
    dynamicrad.disable(wan)
    dynamicrad.enable(wan, token_order="tiled3d", warmup_steps=0, block_size=32)
    with pytest.raises(ValueError, match="per-token timesteps"):
        _forward(wan, x)


def test_per_token_timesteps_advance_the_step(wan, wan_inputs):
    """Per-token timesteps whose conditioning frame stays at 0: the step follows the largest one."""
    x = wan_inputs()
    state = dynamicrad.enable(wan, **SPARSE)
    for step, t in enumerate((900.0, 800.0, 700.0)):
        x["timestep"] = torch.full((1, 5 * 8 * 8), t)
        x["timestep"][:, :64] = 0.0
        _forward(wan, x)
        assert (state.step, state.call_in_step) == (step, 0)


def test_compiled_transformer_matches_eager(wan, wan_inputs):
    """torch.compile of a DynamicRad-enabled transformer: one graph for the blocks (the only break
    is the step counter reading the timestep at model entry) and the eager result."""
    x = wan_inputs()
    dynamicrad.enable(wan, warmup_steps=0, block_size=32, regime="high")
    eager = _forward(wan, x)
    with torch.no_grad():
        explained = torch._dynamo.explain(wan)(**x)
        compiled = torch.compile(wan, backend="aot_eager")(**x).sample
    assert explained.graph_break_count <= 1
    assert torch.equal(compiled, eager)
    torch._dynamo.reset()


def test_mask_pictures(wan, wan_inputs, tmp_path):
    """state.save_mask_png draws a layer's layout; without keep_layouts only the last layer can be."""
    x = wan_inputs()
    state = dynamicrad.enable(wan, warmup_steps=0, block_size=32, regime="high")
    _forward(wan, x)
    state.save_mask_png(tmp_path / "last.png", layer=2, head=1)
    assert (tmp_path / "last.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="keep_layouts"):
        state.save_mask_png(tmp_path / "first.png", layer=1)
    with pytest.raises(ValueError, match="layer = 0"):
        state.save_mask_png(tmp_path / "dense.png", layer=0)  # the dense first layer
    with pytest.raises(ValueError, match="head"):
        state.save_mask_png(tmp_path / "bad.png", layer=2, head=9)
    dynamicrad.disable(wan)
    state = dynamicrad.enable(wan, warmup_steps=0, block_size=32, regime="high", keep_layouts=True)
    _forward(wan, x)
    for layer in (1, 2):
        state.save_mask_png(tmp_path / f"layer{layer}.png", layer=layer)
        assert (tmp_path / f"layer{layer}.png").stat().st_size > 100
    # one transformer call ran: call 0 is the only sparse call of a layer's last step
    for call in (1, -1):
        with pytest.raises(ValueError, match=f"call = {call}: layer 2 ran 1 sparse call"):
            state.save_mask_png(tmp_path / "call.png", layer=2, call=call)
    for call in (True, 0.0, "0"):
        with pytest.raises(TypeError, match="call = .*: must be an integer"):
            state.save_mask_png(tmp_path / "call.png", layer=2, call=call)
    with pytest.raises(ValueError, match="keep_layouts"):
        DynamicRadConfig(keep_layouts="yes")


def test_fused_rotary_gives_the_stock_bits(make_wan, wan_inputs):
    """fused_rotary (with the stock norm) only changes how the rotary embedding is computed, not a
    bit of the result."""
    x = wan_inputs(batch=2)
    outs = []
    for fused in (True, False):
        model = make_wan(seed=4)
        dynamicrad.enable(model, warmup_steps=0, block_size=32, regime="high", fused_rotary=fused, fused_norm=False)
        outs.append(_forward(model, x))
    assert torch.equal(outs[0], outs[1])


def test_fused_norm_runs_and_stays_within_rounding(make_wan, wan_inputs, helpers):
    """fused_norm (the default) runs norm_q / norm_k inside the one-pass kernel: the stock norm
    modules are not called, and the output is the stock-norm output up to float rounding."""
    x = wan_inputs(batch=2)
    outs, norm_calls = [], []
    for fused_norm in (True, False):
        model = make_wan(seed=4)
        calls = [0]
        for block in model.blocks:
            block.attn1.norm_q.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
        dynamicrad.enable(model, warmup_steps=0, block_size=32, regime="high", fused_norm=fused_norm)
        outs.append(_forward(model, x))
        norm_calls.append(calls[0])
    assert norm_calls == [0, len(model.blocks)]
    assert helpers.rel_err(outs[0], outs[1]) <= 1e-6


def test_fused_norm_takes_the_norms_own_eps(make_wan, wan_inputs, helpers):
    """The one-pass norm adds norm_q / norm_k's own eps (here one large enough to change the result)."""
    x = wan_inputs()
    outs = []
    for fused_norm in (True, False):
        model = make_wan(seed=4)
        for block in model.blocks:
            block.attn1.norm_q.eps = block.attn1.norm_k.eps = 0.5
        dynamicrad.enable(model, **helpers.DENSITY_ONE, fused_norm=fused_norm)
        outs.append(_forward(model, x))
    assert helpers.rel_err(outs[0], outs[1]) <= 1e-6


# ---- (10) dense_backend: dense layers and warm-up steps on DynamicRad's kernels ---------------------
def _count_dense_calls(monkeypatch) -> tuple:
    """Counts the engine's dense path (``dynamicrad.state.dense_attention``, what
    DynamicRadState.dense_attention calls) and the stock self-attention (the dispatch module's
    ``dispatch_attention_fn``; cross-attention calls diffusers' own). Returns (engine calls as
    (q shape, tensor) lists, stock call list)."""
    import dynamicrad.state as state_module
    from dynamicrad.integrations import dispatch as dispatch_module

    engine_calls, stock_calls = [], []
    real_dense, real_stock = state_module.dense_attention, dispatch_module.dispatch_attention_fn

    def dense(q, k, v, engine):
        engine_calls.append(tuple(q.shape))
        return real_dense(q, k, v, engine)

    def stock(q, *args, **kwargs):
        stock_calls.append(tuple(q.shape))
        return real_stock(q, *args, **kwargs)

    monkeypatch.setattr(state_module, "dense_attention", dense)
    monkeypatch.setattr(dispatch_module, "dispatch_attention_fn", stock)
    return engine_calls, stock_calls


@pytest.mark.parametrize("batch", [1, 2])
def test_dense_backend_dynamicrad_warmup_matches_stock(wan, wan_inputs, helpers, monkeypatch, batch):
    """A warm-up step with dense_backend="dynamicrad" runs every self-attention layer once through the
    engine's dense path (never the stock attention) and gives the stock output within fp32 rounding;
    the next (sparse) step then runs it only for the dense first layer."""
    x = wan_inputs(batch=batch)
    stock = {t: _forward(wan, x, t) for t in (900, 800)}
    engine_calls, stock_calls = _count_dense_calls(monkeypatch)
    state = dynamicrad.enable(wan, block_size=32, regime="high", warmup_steps=1, dense_backend="dynamicrad")
    assert state.config.dense_backend == "dynamicrad"
    out = _forward(wan, x, 900)
    assert state.step == 0 and all(r.dense for r in state.report())
    assert engine_calls == [(batch, 320, 2, 64)] * 3, "once per self-attention layer"
    assert stock_calls == []
    assert helpers.rel_err(out, stock[900]) < 1e-5
    assert not torch.equal(out, stock[900]), "the engine's kernels, not the stock bits"
    for b in range(batch):
        assert helpers.rel_err(out[b], stock[900][b]) < 1e-5

    engine_calls.clear()
    out = _forward(wan, x, 800)  # step 1: sparse, dense_layers=1
    assert state.step == 1 and [r.dense for r in state.report()] == [True, False, False]
    assert engine_calls == [(batch, 320, 2, 64)] and stock_calls == []
    # the tolerance tells dense from sparse attention
    assert helpers.rel_err(out, stock[800]) > 1e-4


def test_dense_backend_stock_never_calls_the_engine_dense_path(wan, wan_inputs, monkeypatch):
    """"stock", and the default "auto" on CPU tensors, run the stock attention in dense layers and
    warm-up steps."""
    x = wan_inputs()
    ref = _forward(wan, x)
    engine_calls, stock_calls = _count_dense_calls(monkeypatch)
    state = dynamicrad.enable(wan, block_size=32, regime="high", warmup_steps=1, fused_norm=False)
    assert state.config.dense_backend == "auto"
    assert torch.equal(_forward(wan, x), ref), "the stock attention and norm: the stock bits"
    assert engine_calls == [] and stock_calls == [(1, 320, 2, 64)] * 3
    dynamicrad.disable(wan)
    stock_calls.clear()
    dynamicrad.enable(wan, **SPARSE, dense_backend="stock")  # dense_layers=1 in a sparse step
    _forward(wan, x)
    assert engine_calls == [] and stock_calls == [(1, 320, 2, 64)]


def test_dense_backend_dynamicrad_dense_layer_in_sparse_step(make_wan, wan_inputs, helpers, monkeypatch):
    """dense_layers=1, warmup_steps=0: layer 0 runs the engine's dense path, layers 1-2 stay sparse;
    the result is the stock-backend model's within fp32 rounding (the same layouts), batch 1 and 2."""
    engine_calls, stock_calls = _count_dense_calls(monkeypatch)
    for batch in (1, 2):
        x = wan_inputs(batch=batch)
        outs = {}
        for backend in ("stock", "dynamicrad"):
            model = make_wan(seed=0)
            engine_calls.clear()
            stock_calls.clear()
            state = dynamicrad.enable(model, **SPARSE, mode="static-ratio", dense_layers=1, keep_layouts=True,
                                      dense_backend=backend)
            outs[backend] = _forward(model, x)
            reports = state.report()
            assert [r.dense for r in reports] == [True, False, False]
            assert all(0 < r.kept < r.total for r in reports[1:])
            if backend == "dynamicrad":
                assert engine_calls == [(batch, 320, 2, 64)] and stock_calls == []
            else:
                assert engine_calls == [] and stock_calls == [(batch, 320, 2, 64)]
            dynamicrad.disable(model)
        assert helpers.rel_err(outs["dynamicrad"], outs["stock"]) < 1e-5


def test_dense_backend_dynamicrad_tiled3d_warmup(wan, wan_inputs, helpers, monkeypatch):
    """The tiled token order during a dynamicrad dense warm-up step: dense attention does not care
    about the order, so the result is the stock one (partial tiles, short last block)."""
    x = wan_inputs(batch=2, **PARTIAL)
    ref = _forward(wan, x)
    engine_calls, stock_calls = _count_dense_calls(monkeypatch)
    dynamicrad.enable(wan, warmup_steps=1, block_size=32, token_order="tiled3d", dense_backend="dynamicrad")
    assert helpers.rel_err(_forward(wan, x), ref) < 1e-5
    assert engine_calls == [(2, 180, 2, 64)] * 3 and stock_calls == []


def test_dense_backend_dynamicrad_batch_changes(wan, wan_inputs, helpers, monkeypatch):
    """Batch 2 then 1 then 2 through one engine (a dense plan per batch)."""
    engine_calls, _ = _count_dense_calls(monkeypatch)
    xs = {b: wan_inputs(batch=b, seed=b) for b in (1, 2)}
    refs = {b: _forward(wan, xs[b]) for b in (1, 2)}
    state = dynamicrad.enable(wan, warmup_steps=1, block_size=32, dense_backend="dynamicrad")
    for b in (2, 1, 2):
        assert helpers.rel_err(_forward(wan, xs[b]), refs[b]) < 1e-5
    assert len(state._engines) == 1
    assert engine_calls == [(2, 320, 2, 64)] * 3 + [(1, 320, 2, 64)] * 3 + [(2, 320, 2, 64)] * 3


@pytest.mark.parametrize("value", ["cudnn", "DynamicRad", "", None, 1])
def test_dense_backend_is_checked(wan, helpers, value):
    hooks = helpers.hook_snapshot(wan)
    with pytest.raises(ValueError, match="^dense_backend"):
        dynamicrad.enable(wan, dense_backend=value)
    with pytest.raises(ValueError, match="^dense_backend"):
        DynamicRadConfig(dense_backend=value)
    assert getattr(wan, "dynamicrad_state", None) is None
    assert helpers.hook_snapshot(wan) == hooks


def test_dense_backend_default_and_mask_conflict(wan, helpers):
    assert DynamicRadConfig().dense_backend == "auto"
    for backend in ("auto", "stock", "dynamicrad"):
        assert DynamicRadConfig(dense_backend=backend, dense_padding="drop").dense_backend == backend
    for backend in ("auto", "stock"):  # "auto" with "mask" resolves to the stock masked call
        assert DynamicRadConfig(dense_backend=backend, dense_padding="mask").dense_padding == "mask"
    hooks = helpers.hook_snapshot(wan)
    for make in (lambda: DynamicRadConfig(dense_backend="dynamicrad", dense_padding="mask"),
                 lambda: dynamicrad.enable(wan, dense_backend="dynamicrad", dense_padding="mask")):
        with pytest.raises(ValueError) as info:
            make()
        assert "dense_backend" in str(info.value) and "dense_padding" in str(info.value)
    assert getattr(wan, "dynamicrad_state", None) is None
    assert helpers.hook_snapshot(wan) == hooks


@pytest.mark.parametrize("backend, padding, block, device, dtype, expected", [
    ("auto", "drop", 128, "cuda", torch.bfloat16, "dynamicrad"),
    ("auto", "drop", 128, "cuda", torch.float16, "dynamicrad"),
    ("auto", "drop", 64, "cuda", torch.bfloat16, "dynamicrad"),
    ("auto", "drop", 32, "cuda", torch.bfloat16, "stock"),  # no CUDA kernel for block 32
    ("auto", "drop", 128, "cuda", torch.float32, "stock"),  # the CUDA kernels take 16-bit elements only
    ("auto", "drop", 128, "cpu", torch.bfloat16, "stock"),
    ("auto", "drop", 128, "cpu", torch.float32, "stock"),
    ("auto", "mask", 128, "cuda", torch.bfloat16, "stock"),  # the stock masked call
    ("stock", "drop", 128, "cuda", torch.bfloat16, "stock"),
    ("dynamicrad", "drop", 32, "cpu", torch.float32, "dynamicrad"),
    ("dynamicrad", "drop", 128, "cuda", torch.bfloat16, "dynamicrad"),
])
def test_dense_backend_auto_resolution(backend, padding, block, device, dtype, expected):
    config = DynamicRadConfig(dense_backend=backend, dense_padding=padding, block_size=block)
    assert config.dense_backend_for(device, dtype) == expected


def test_dense_backend_auto_asks_with_the_call_device_and_dtype(wan, wan_inputs, helpers, monkeypatch):
    """The dispatch resolves "auto" per call from Q's device and dtype: where the resolution says
    "dynamicrad" (as it does for CUDA bf16 / f16), the warm-up step runs the engine's dense path."""
    asked = []

    def resolve(self, device_type, dtype):
        asked.append((device_type, dtype))
        return "dynamicrad"

    x = wan_inputs()
    ref = _forward(wan, x)
    engine_calls, stock_calls = _count_dense_calls(monkeypatch)
    monkeypatch.setattr(DynamicRadConfig, "dense_backend_for", resolve)
    dynamicrad.enable(wan, block_size=32, regime="high", warmup_steps=1)
    out = _forward(wan, x)
    assert asked == [("cpu", torch.float32)] * 3
    assert engine_calls == [(1, 320, 2, 64)] * 3 and stock_calls == []
    assert helpers.rel_err(out, ref) < 1e-5
