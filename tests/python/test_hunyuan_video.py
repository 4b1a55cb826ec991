"""dynamicrad.enable / disable on a tiny random HunyuanVideoTransformer3DModel (2 dual-stream + 2
single-stream blocks, 2 heads of 32; joint attention over video tokens followed by 12 text tokens,
with per-batch-element valid text lengths from encoder_attention_mask)."""

from __future__ import annotations

import pytest
import torch

import dynamicrad
from dynamicrad.integrations.hunyuan_video import HunyuanVideoAttentionProcessor

SPARSE = dict(warmup_steps=0, block_size=32, regime="high")


def _forward(model, inputs):
    with torch.no_grad():
        return model(**inputs).sample


def _wide(inputs: dict) -> dict:
    """Latents 3 x 16 x 32 -> 3 x 8 x 16 video tokens, where 1 x 4 x 8 tiles differ from raster."""
    g = torch.Generator().manual_seed(11)
    batch = inputs["hidden_states"].shape[0]
    return {**inputs, "hidden_states": torch.randn(batch, 4, 3, 16, 32, generator=g)}


def test_density_one_with_padded_prompts(make_hunyuan, hunyuan_inputs, helpers):
    model = make_hunyuan()
    x = hunyuan_inputs(lengths=(12, 7))
    ref = _forward(model, x)
    state = dynamicrad.enable(model, **helpers.DENSITY_ONE)
    assert state.family == "hunyuan_video" and state.num_layers == 4
    out = _forward(model, x)
    assert helpers.rel_err(out, ref) < 1e-5
    # per batch element too (the shorter prompt runs as its own group)
    for b in range(2):
        assert helpers.rel_err(out[b], ref[b]) < 1e-5
    reports = state.report()
    assert [r.layer for r in reports] == [0, 1, 2, 3]
    for r in reports:
        # two groups (text 12 and text 7): 320 + 12 -> 11 blocks, 320 + 7 -> 11 blocks; 2 heads each
        assert not r.dense and r.sparsity == 0.0 and r.kept == r.total == 2 * 11 * 11 * 2
    assert len(state._engines) == 2, "one engine per valid text length"


def test_density_one_unpadded_batch(make_hunyuan, hunyuan_inputs, helpers):
    model = make_hunyuan()
    x = hunyuan_inputs(lengths=(12, 12))
    ref = _forward(model, x)
    state = dynamicrad.enable(model, **helpers.DENSITY_ONE)
    assert helpers.rel_err(_forward(model, x), ref) < 1e-5
    assert len(state._engines) == 1


@pytest.mark.parametrize("lengths", [(7,), (7, 7)])
def test_density_one_one_padded_length(make_hunyuan, hunyuan_inputs, helpers, lengths):
    """Every element with the same padded prompt length: one group, the valid tokens as a slice."""
    model = make_hunyuan()
    x = hunyuan_inputs(batch=len(lengths), lengths=lengths)
    ref = _forward(model, x)
    state = dynamicrad.enable(model, **helpers.DENSITY_ONE)
    assert helpers.rel_err(_forward(model, x), ref) < 1e-5
    assert len(state._engines) == 1
    # 320 video + 7 text tokens -> 11 blocks of 32, 2 heads, every batch element
    assert all(r.kept == r.total == len(lengths) * 11 * 11 * 2 for r in state.report())


def test_default_config_bounded_error(make_hunyuan, hunyuan_inputs, helpers):
    model = make_hunyuan()
    x = hunyuan_inputs(lengths=(12, 7))
    ref = _forward(model, x)
    state = dynamicrad.enable(model, **SPARSE)
    out = _forward(model, x)
    assert torch.isfinite(out).all()
    assert 0 < helpers.rel_err(out, ref) < 0.05
    reports = state.report()
    assert reports[0].dense
    for r in reports[1:]:
        assert not r.dense and 0 < r.kept < r.total
    assert state.mean_sparsity() > 0


def test_padded_element_matches_running_alone(make_hunyuan, hunyuan_inputs):
    """Grouping by text length: the padded element's result inside the batch equals its result alone."""
    model = make_hunyuan()
    x = hunyuan_inputs(lengths=(12, 7))
    dynamicrad.enable(model, **SPARSE, mode="static-ratio")
    out = _forward(model, x)
    alone = _forward(model, {k: v[1:2] for k, v in x.items()})
    torch.testing.assert_close(out[1:2], alone, atol=1e-5, rtol=1e-4)


def test_groups_of_rows_that_are_not_adjacent(make_hunyuan, hunyuan_inputs, helpers):
    """Three prompt lengths over four elements, the equal ones not next to each other (12, 0, 7, 12),
    one of them with no valid text token: every element's result is its result alone; with every
    block kept, the elements with text match stock."""
    model = make_hunyuan()
    lengths = (12, 0, 7, 12)
    x = hunyuan_inputs(batch=4, lengths=lengths)
    ref = _forward(model, x)
    state = dynamicrad.enable(model, **helpers.DENSITY_ONE)
    out = _forward(model, x)
    assert torch.isfinite(out).all(), "a prompt without valid tokens still gives finite video tokens"
    for b in (0, 2, 3):
        assert helpers.rel_err(out[b], ref[b]) < 1e-5, b
    assert len(state._engines) == 3, "one engine per valid text length"
    dynamicrad.disable(model)
    dynamicrad.enable(model, **SPARSE, mode="static-ratio")
    out = _forward(model, x)
    for b in range(4):
        alone = _forward(model, {k: v[b:b + 1] for k, v in x.items()})
        torch.testing.assert_close(out[b:b + 1], alone, atol=1e-5, rtol=1e-4, msg=f"batch element {b}")


def test_padded_text_tokens_are_ignored(make_hunyuan, hunyuan_inputs, helpers):
    """What sits in padded text positions must not change the output (as in the stock model)."""
    model = make_hunyuan()
    x = hunyuan_inputs(lengths=(12, 7))
    dynamicrad.enable(model, **SPARSE)
    _expect_padding_ignored(model, x)


def _expect_padding_ignored(model, x) -> None:
    """The output stays the same when the second prompt's padded tokens (past its 7 valid ones) change."""
    out = _forward(model, x)
    y = dict(x)
    y["encoder_hidden_states"] = x["encoder_hidden_states"].clone()
    y["encoder_hidden_states"][1, 7:] = 100.0
    torch.testing.assert_close(_forward(model, y), out, atol=1e-5, rtol=1e-4)


def test_disable_restores_everything(make_hunyuan, hunyuan_inputs, helpers):
    model = make_hunyuan()
    x = _wide(hunyuan_inputs())
    ref = _forward(model, x)
    processors = helpers.processor_snapshot(model)
    hooks = helpers.hook_snapshot(model)
    dynamicrad.enable(model, **SPARSE, token_order="tiled3d")
    attns = [b.attn for b in model.transformer_blocks] + [b.attn for b in model.single_transformer_blocks]
    assert all(isinstance(a.processor, HunyuanVideoAttentionProcessor) for a in attns)
    # the token refiner's attention stays stock
    refiner = {n: p for n, p in helpers.processor_snapshot(model).items() if n.startswith("context_embedder")}
    assert refiner and all(p is processors[n] for n, p in refiner.items())
    assert not torch.equal(_forward(model, x), ref)
    dynamicrad.disable(model)
    assert torch.equal(_forward(model, x), ref)
    after = helpers.processor_snapshot(model)
    assert after.keys() == processors.keys() and all(after[n] is p for n, p in processors.items())
    assert helpers.hook_snapshot(model) == hooks
    assert getattr(model, "dynamicrad_state", None) is None


def test_tiled3d_density_one(make_hunyuan, hunyuan_inputs, helpers):
    model = make_hunyuan()
    x = _wide(hunyuan_inputs(lengths=(12, 7)))
    ref = _forward(model, x)
    dynamicrad.enable(model, **helpers.DENSITY_ONE, token_order="tiled3d")
    assert helpers.rel_err(_forward(model, x), ref) < 1e-5


def test_tiled3d_changes_the_blocks(make_hunyuan, hunyuan_inputs, helpers):
    model = make_hunyuan()
    x = _wide(hunyuan_inputs(lengths=(12, 7)))
    ref = _forward(model, x)
    outs = {}
    for order in ("raster", "tiled3d"):
        dynamicrad.enable(model, **SPARSE, mode="static-ratio", dense_layers=0, token_order=order)
        outs[order] = _forward(model, x)
        dynamicrad.disable(model)
    assert helpers.rel_err(outs["raster"], outs["tiled3d"]) > 1e-4
    assert helpers.rel_err(outs["tiled3d"], ref) < 0.05


def test_token_replace_rejects_tiled3d(make_hunyuan, helpers):
    model = make_hunyuan(image_condition_type="token_replace")
    processors = helpers.processor_snapshot(model)
    hooks = helpers.hook_snapshot(model)
    with pytest.raises(ValueError, match="token_replace"):
        dynamicrad.enable(model, token_order="tiled3d")
    assert getattr(model, "dynamicrad_state", None) is None
    assert helpers.hook_snapshot(model) == hooks
    assert all(helpers.processor_snapshot(model)[n] is p for n, p in processors.items())
    # the raster order is fine
    state = dynamicrad.enable(model, token_order="raster")
    assert model.dynamicrad_state is state
    dynamicrad.disable(model)


def test_token_replace_raster_density_one(make_hunyuan, hunyuan_inputs, helpers):
    """HunyuanVideo I2V blocks (token_replace) run DynamicRad in the raster order."""
    model = make_hunyuan(image_condition_type="token_replace")
    x = hunyuan_inputs(lengths=(12, 7))
    ref = _forward(model, x)
    state = dynamicrad.enable(model, **helpers.DENSITY_ONE)
    assert helpers.rel_err(_forward(model, x), ref) < 1e-5
    assert all(not r.dense for r in state.report())


def test_positional_arguments(make_hunyuan, hunyuan_inputs, helpers):
    model = make_hunyuan()
    x = hunyuan_inputs(lengths=(12, 5))
    ref = _forward(model, x)
    state = dynamicrad.enable(model, **helpers.DENSITY_ONE)
    with torch.no_grad():
        out = model(x["hidden_states"], x["timestep"], x["encoder_hidden_states"], x["encoder_attention_mask"],
                    x["pooled_projections"], x["guidance"], return_dict=False)[0]
    assert helpers.rel_err(out, ref) < 1e-5
    assert state.text_lengths is None and len(state._engines) == 2


def test_refresh_interval_with_padded_prompts(make_hunyuan, hunyuan_inputs):
    """refresh_interval=2 with two text-length groups: step 1 reuses step 0's layouts (differs from
    a model that selects every step), step 2 selects again (equals it)."""
    a, b = make_hunyuan(), make_hunyuan()
    x0 = hunyuan_inputs(seed=1)
    x1 = hunyuan_inputs(seed=2)
    x1["hidden_states"] = 3.0 * x1["hidden_states"].flip(-1)
    config = dict(warmup_steps=0, dense_layers=0, block_size=32, regime="high", mode="static-ratio")
    dynamicrad.enable(a, **config, refresh_interval=2)
    dynamicrad.enable(b, **config)
    outs = {"a": [], "b": []}
    for x, t in [(x0, 900.0), (x1, 800.0), (x1, 700.0)]:
        for name, model in (("a", a), ("b", b)):
            outs[name].append(_forward(model, {**x, "timestep": torch.full((2,), t)}))
    assert a.dynamicrad_state.step == 2
    assert torch.equal(outs["a"][0], outs["b"][0])
    assert not torch.equal(outs["a"][1], outs["b"][1])
    assert torch.equal(outs["a"][2], outs["b"][2])


def test_refresh_interval_keeps_each_groups_layouts(make_hunyuan, hunyuan_inputs, monkeypatch):
    """Text-length groups of different sizes (two elements with 7 valid tokens, one with 12) each
    reuse their own layouts in a reuse step: no group selects again."""
    import dynamicrad.state as state_module

    selects, real = [], state_module.sparse_attention

    def spy(q, *args, select=True, **kwargs):
        selects.append((q.shape[0], select))
        return real(q, *args, select=select, **kwargs)

    monkeypatch.setattr(state_module, "sparse_attention", spy)
    model = make_hunyuan()
    dynamicrad.enable(model, warmup_steps=0, dense_layers=0, block_size=32, regime="high", refresh_interval=2)
    x = hunyuan_inputs(batch=3, lengths=(12, 7, 7))
    for t in (900.0, 800.0):
        _forward(model, {**x, "timestep": torch.full((3,), t)})
    layers = 4
    assert selects == [(2, True), (1, True)] * layers + [(2, False), (1, False)] * layers


@pytest.mark.parametrize("fused_norm", [False, True])
@pytest.mark.parametrize("dense_padding", ["mask", "drop"])
def test_warmup_and_steps(make_hunyuan, hunyuan_inputs, helpers, fused_norm, dense_padding):
    """Warm-up steps run the stock attention. With the stock mask and Q/K norm: the stock bits; with
    the padded text tokens dropped instead of masked, or the one-pass Q/K norm (whose sum of squares
    rounds differently), within float rounding of them."""
    model = make_hunyuan()
    x = hunyuan_inputs()
    stock = {t: _forward(model, {**x, "timestep": torch.full((2,), float(t))}) for t in (900, 800)}
    state = dynamicrad.enable(model, block_size=32, regime="high", warmup_steps=1, fused_norm=fused_norm,
                              dense_padding=dense_padding)
    out = _forward(model, {**x, "timestep": torch.full((2,), 900.0)})
    if fused_norm or dense_padding == "drop":
        assert helpers.rel_err(out, stock[900]) <= 1e-6
    else:
        assert torch.equal(out, stock[900])
    assert all(r.dense for r in state.report())
    out = _forward(model, {**x, "timestep": torch.full((2,), 800.0)})
    assert state.step == 1 and helpers.rel_err(out, stock[800]) > 1e-4


@pytest.mark.parametrize("lengths", [(12, 7), (9, 9), (12, 12)])
@pytest.mark.parametrize("dense_padding", ["drop", "mask"])
def test_dense_padding(make_hunyuan, hunyuan_inputs, helpers, monkeypatch, lengths, dense_padding):
    """Dense layers and warm-up steps: "drop" calls the stock attention without a mask on each
    prompt length's valid tokens (one call a length group), "mask" makes the stock masked call; both
    give the stock output."""
    from dynamicrad.integrations import dispatch as dispatch_module

    model = make_hunyuan()
    x = hunyuan_inputs(lengths=lengths)
    ref = _forward(model, x)
    calls = []
    stock_fn = dispatch_module.dispatch_attention_fn

    def recording(q, k, v, attn_mask=None, **kwargs):
        calls.append((q.shape[0], q.shape[1], attn_mask is not None))
        return stock_fn(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(dispatch_module, "dispatch_attention_fn", recording)
    state = dynamicrad.enable(model, block_size=32, regime="high", warmup_steps=1, dense_padding=dense_padding)
    out = _forward(model, x)
    assert all(r.dense for r in state.report())
    assert helpers.rel_err(out, ref) <= 1e-6
    video = 5 * 8 * 8  # hunyuan_inputs: 5 x 16 x 16 latents, patch 1 x 2 x 2
    if dense_padding == "mask":
        expected = [(2, video + 12, True)]
    else:
        expected = [(1 if lengths[0] != lengths[1] else 2, video + n, False) for n in sorted(set(lengths))]
    assert calls == expected * 4  # every layer


def test_dense_padding_is_checked(make_hunyuan):
    with pytest.raises(ValueError, match="dense_padding"):
        dynamicrad.enable(make_hunyuan(), dense_padding="zeros")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_norm_runs_and_stays_within_rounding(make_hunyuan, hunyuan_inputs, helpers, dtype):
    """fused_norm (the default) runs norm_q / norm_k and the rotary embedding of the video tokens in
    one pass (``norm_rotary``, style "hunyuan_video"): the norm modules are not called (the text
    tokens' norm_added_q / norm_added_k of the dual-stream blocks still are), and the output is the
    stock arithmetic's up to the rounding of the norm's factor."""
    x = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
         for k, v in hunyuan_inputs(lengths=(12, 7)).items()}
    outs, calls = [], []
    for fused_norm in (True, False):
        model = make_hunyuan().to(dtype)
        count = {"q": 0, "added_q": 0}
        for block in list(model.transformer_blocks) + list(model.single_transformer_blocks):
            block.attn.norm_q.register_forward_hook(lambda *a, c=count: c.__setitem__("q", c["q"] + 1))
            if block.attn.norm_added_q is not None:
                block.attn.norm_added_q.register_forward_hook(
                    lambda *a, c=count: c.__setitem__("added_q", c["added_q"] + 1))
        dynamicrad.enable(model, **SPARSE, fused_norm=fused_norm)
        outs.append(_forward(model, x).float())
        calls.append(count)
    assert calls == [{"q": 0, "added_q": 2}, {"q": 4, "added_q": 2}]
    # float32: the norm's factor in its last bit; bfloat16: that flips a few roundings of Q and K
    assert helpers.rel_err(outs[0], outs[1]) <= (1e-6 if dtype == torch.float32 else 1e-2)


def test_latents_not_divisible_by_patch(make_hunyuan, hunyuan_inputs):
    model = make_hunyuan()
    dynamicrad.enable(model, **SPARSE)
    x = hunyuan_inputs()
    x["hidden_states"] = torch.randn(2, 4, 5, 15, 16)
    with pytest.raises(ValueError, match="patch"):
        _forward(model, x)


def test_processor_outside_forward(make_hunyuan, hunyuan_inputs):
    model = make_hunyuan()
    dynamicrad.enable(model, **SPARSE, dense_layers=0)
    _forward(model, hunyuan_inputs())
    attn = model.transformer_blocks[0].attn
    with pytest.raises(ValueError, match="outside the transformer's forward"):
        with torch.no_grad():
            attn(torch.randn(1, 320, 64), torch.randn(1, 12, 64))


# ---- fused pooling: the block means of Q and K from the norm + rotary pass ----------------------
def _layer_reports(state) -> list:
    return [(r.layer, r.dense, r.kept, r.total) for r in state.report()]


def _layer_layouts(state) -> list:
    """Every layer's layouts of its last sparse step (keep_layouts=True): (offsets, cols) per record."""
    return [[tuple(t.clone() for t in engine.layout(slot)) for engine, slot in state._records.get(layer, [])]
            for layer in range(state.num_layers)]


def _same_layouts(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(x, y))
        for x, y in zip(a, b))


def _run_pooling_pair(make_hunyuan, monkeypatch, inputs: dict, dtype=torch.float32, steps=(900.0,), **config):
    """The same model (seed 0) with fused_pooling True and False, the same inputs for each timestep of
    ``steps``: {fused_pooling: (outputs, (reports, layouts) after each step, norm_rotary_pooled calls)}.
    The mode is static-ratio unless ``config`` says otherwise: its layouts follow the block scores
    (test_fused_pooling_means_reach_selection), where this tiny model's dynamic-threshold layouts are
    the prior's alone (the same with every mean zero), so they would not show wrong means."""
    from dynamicrad.integrations import hunyuan_video as module

    calls = []
    real = module.norm_rotary_pooled

    def counting(*args, **kwargs):
        calls.append(args[7:9])  # pool_block, pooled_blocks
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "norm_rotary_pooled", counting)
    batch = inputs["hidden_states"].shape[0]
    results = {}
    for fused_pooling in (True, False):
        calls.clear()
        model = make_hunyuan().to(dtype)
        state = dynamicrad.enable(model, **{**SPARSE, "keep_layouts": True, "mode": "static-ratio", **config},
                                  fused_pooling=fused_pooling)
        assert state.config.fused_pooling is fused_pooling
        outs, reports = [], []
        for t in steps:
            outs.append(_forward(model, {**inputs, "timestep": torch.full((batch,), t)}))
            reports.append((_layer_reports(state), _layer_layouts(state)))
        results[fused_pooling] = (outs, reports, list(calls))
        dynamicrad.disable(model)
    return results


def _cast(inputs: dict, dtype) -> dict:
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}


def _assert_same_selection(results) -> None:
    """fused_pooling True and False: the same report and the same layout bits, every step and layer."""
    fused, plain = results[True][1], results[False][1]
    assert len(fused) == len(plain)
    for (fused_reports, fused_layouts), (plain_reports, plain_layouts) in zip(fused, plain):
        assert fused_reports == plain_reports
        assert _same_layouts(fused_layouts, plain_layouts)


@pytest.mark.parametrize("lengths", [(12, 7), (9, 4), (7, 7), (12, 12)],
                         ids=["padded-12-7", "padded-9-4", "padded-7-7", "unpadded"])
def test_fused_pooling_is_the_same_bits_and_layouts(make_hunyuan, hunyuan_inputs, monkeypatch, lengths):
    """fused_pooling=True (the default) takes the block means of the video blocks in the norm + rotary
    pass (norm_rotary_pooled, twice a layer: Q and K); selection's layouts and the output are the same
    bits as selection pooling Q and K itself, with padded prompts of two lengths (two groups), one
    padded length (a slice) and no padding."""
    x = hunyuan_inputs(lengths=lengths)
    results = _run_pooling_pair(make_hunyuan, monkeypatch, x, dense_layers=0)
    (fused_out, fused_steps, fused_calls), (plain_out, _, plain_calls) = results[True], results[False]
    # 320 video tokens = 10 blocks of 32, every one of them whole in the joint sequence
    assert fused_calls == [(32, 10)] * 8, "norm_rotary_pooled for Q and K of each of the 4 layers"
    assert plain_calls == []
    assert torch.equal(fused_out[0], plain_out[0])
    _assert_same_selection(results)
    reports, layouts = fused_steps[0]
    assert all(not dense and 0 < kept < total for _, dense, kept, total in reports)
    assert [len(per_layer) for per_layer in layouts] == [len(set(lengths))] * 4  # one layout a length group


def test_fused_pooling_default_is_on(make_hunyuan, hunyuan_inputs, monkeypatch):
    from dynamicrad.integrations import hunyuan_video as module

    assert dynamicrad.DynamicRadConfig().fused_pooling is True
    calls = []
    real = module.norm_rotary_pooled
    monkeypatch.setattr(module, "norm_rotary_pooled", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    model = make_hunyuan()
    state = dynamicrad.enable(model, **SPARSE)
    assert state.config.fused_pooling is True
    _forward(model, hunyuan_inputs())
    assert len(calls) == 8


def test_fused_pooling_partial_video_block_tiled3d_and_steps(make_hunyuan, hunyuan_inputs, monkeypatch):
    """280 video tokens (latents 5 x 14 x 16): 8 whole blocks of video tokens, the ninth shares its
    block with text tokens, so only 8 means come from the fused pass; the tiled3d order; two steps of
    of them with a dense first layer; and the default mode (dynamic-threshold)."""
    x = hunyuan_inputs(lengths=(12, 7))
    x["hidden_states"] = torch.randn(2, 4, 5, 14, 16, generator=torch.Generator().manual_seed(3))
    results = _run_pooling_pair(make_hunyuan, monkeypatch, x, steps=(900.0, 700.0))
    assert results[True][2] == [(32, 8)] * 16 and results[False][2] == []
    for step in range(2):
        assert torch.equal(results[True][0][step], results[False][0][step])
    _assert_same_selection(results)
    assert results[True][1][0][0][0][1] is True  # dense_layers=1: layer 0 dense
    assert results[True][1][0][0][1][1] is False

    results = _run_pooling_pair(make_hunyuan, monkeypatch, hunyuan_inputs(lengths=(12, 7)), mode=None)
    assert results[True][2] == [(32, 10)] * 8
    assert torch.equal(results[True][0][0], results[False][0][0])
    _assert_same_selection(results)

    wide = _wide(hunyuan_inputs(lengths=(12, 7)))  # 384 video tokens, tiles differ from raster
    results = _run_pooling_pair(make_hunyuan, monkeypatch, wide, token_order="tiled3d", dense_layers=0)
    assert results[True][2] == [(32, 12)] * 8
    assert torch.equal(results[True][0][0], results[False][0][0])
    _assert_same_selection(results)


def test_fused_pooling_bfloat16(make_hunyuan, hunyuan_inputs, monkeypatch):
    x = _cast(hunyuan_inputs(lengths=(12, 5)), torch.bfloat16)
    results = _run_pooling_pair(make_hunyuan, monkeypatch, x, dtype=torch.bfloat16, dense_layers=0)
    assert results[True][2] == [(32, 10)] * 8
    assert results[True][0][0].dtype == torch.bfloat16
    assert torch.equal(results[True][0][0], results[False][0][0])
    _assert_same_selection(results)
    assert all(0 < kept < total for _, _, kept, total in results[True][1][0][0])


def test_fused_pooling_means_reach_selection(make_hunyuan, hunyuan_inputs, monkeypatch):
    """The means from norm_rotary_pooled are the ones selection scores: with their block order
    reversed the layouts and the output change (so the identical results above are not selection
    ignoring the means, or recomputing them)."""
    from dynamicrad.integrations import hunyuan_video as module

    x = hunyuan_inputs(lengths=(12, 7))
    real = module.norm_rotary_pooled

    def reversed_means(*args, **kwargs):
        out, pooled = real(*args, **kwargs)
        return out, pooled.flip(2).contiguous()

    results = []
    for wrapper in (real, reversed_means):
        monkeypatch.setattr(module, "norm_rotary_pooled", wrapper)
        model = make_hunyuan()
        state = dynamicrad.enable(model, **SPARSE, dense_layers=0, mode="static-ratio", keep_layouts=True)
        results.append((_forward(model, x), _layer_layouts(state)))
        dynamicrad.disable(model)
    (good_out, good_layouts), (bad_out, bad_layouts) = results
    assert all(len(per_layer) == 2 for per_layer in good_layouts + bad_layouts)
    for layer in range(4):
        assert not _same_layouts([good_layouts[layer]], [bad_layouts[layer]]), layer
    assert not torch.equal(bad_out, good_out)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_fused_pooling_is_checked(make_hunyuan, helpers, value):
    model = make_hunyuan()
    hooks = helpers.hook_snapshot(model)
    with pytest.raises(ValueError, match="fused_pooling"):
        dynamicrad.enable(model, fused_pooling=value)
    assert getattr(model, "dynamicrad_state", None) is None
    assert helpers.hook_snapshot(model) == hooks


def test_fused_pooling_off_without_fused_norm(make_hunyuan, hunyuan_inputs, monkeypatch):
    """fused_pooling needs the one-pass norm: with fused_norm=False the stock norm runs and selection
    pools Q and K itself (no norm_rotary_pooled call), the same bits as fused_pooling=False."""
    x = hunyuan_inputs(lengths=(12, 7))
    results = _run_pooling_pair(make_hunyuan, monkeypatch, x, dense_layers=0, fused_norm=False)
    assert results[True][2] == [] and results[False][2] == []
    assert torch.equal(results[True][0][0], results[False][0][0])
    _assert_same_selection(results)


# ---- dense_backend="dynamicrad": dense layers and warm-up steps on DynamicRad's kernels ------------
def _count_dense_calls(monkeypatch) -> tuple:
    """Records the engine's dense path (``dynamicrad.state.dense_attention``, what
    DynamicRadState.dense_attention calls) as (batch, tokens, engine text tokens) and the stock
    self-attention calls of the dispatch module as (batch, tokens, masked)."""
    import dynamicrad.state as state_module
    from dynamicrad.integrations import dispatch as dispatch_module

    engine_calls, stock_calls = [], []
    real_dense, real_stock = state_module.dense_attention, dispatch_module.dispatch_attention_fn

    def dense(q, k, v, engine):
        engine_calls.append((q.shape[0], q.shape[1], engine.geometry.text_tokens))
        return real_dense(q, k, v, engine)

    def stock(q, k, v, attn_mask=None, **kwargs):
        stock_calls.append((q.shape[0], q.shape[1], attn_mask is not None))
        return real_stock(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(state_module, "dense_attention", dense)
    monkeypatch.setattr(dispatch_module, "dispatch_attention_fn", stock)
    return engine_calls, stock_calls


VIDEO = 5 * 8 * 8  # hunyuan_inputs: 5 x 16 x 16 latents, patch 1 x 2 x 2


@pytest.mark.parametrize("lengths", [(12, 7), (9, 4), (7, 7), (12, 12), (12,), (5,)],
                         ids=["padded-12-7", "padded-9-4", "padded-7-7", "unpadded", "batch1", "batch1-padded"])
def test_dense_backend_dynamicrad_warmup_matches_stock(make_hunyuan, hunyuan_inputs, helpers, monkeypatch, lengths):
    """A warm-up step with dense_backend="dynamicrad": every self-attention layer runs the engine's
    dense path once a prompt-length group (the valid tokens of that length; never the stock attention),
    and the output is the stock masked model's within fp32 rounding, for every batch element."""
    model = make_hunyuan()
    x = hunyuan_inputs(batch=len(lengths), lengths=lengths)
    stock = {t: _forward(model, {**x, "timestep": torch.full((len(lengths),), float(t))}) for t in (900, 800)}
    engine_calls, stock_calls = _count_dense_calls(monkeypatch)
    state = dynamicrad.enable(model, block_size=32, regime="high", warmup_steps=1, dense_backend="dynamicrad")
    out = _forward(model, {**x, "timestep": torch.full((len(lengths),), 900.0)})
    assert all(r.dense for r in state.report())
    groups = sorted(set(lengths))
    per_layer = [(sum(1 for n in lengths if n == m), VIDEO + m, m) for m in groups]
    assert engine_calls == per_layer * 4, "once per self-attention layer and prompt-length group"
    assert stock_calls == []
    assert helpers.rel_err(out, stock[900]) < 1e-5
    for b in range(len(lengths)):
        assert helpers.rel_err(out[b], stock[900][b]) < 1e-5
    assert not torch.equal(out, stock[900]), "the engine's kernels, not the stock bits"
    assert len(state._engines) == len(groups)

    # the next step is sparse (dense_layers=1: layer 0 still runs the engine's dense path)
    engine_calls.clear()
    out = _forward(model, {**x, "timestep": torch.full((len(lengths),), 800.0)})
    assert state.step == 1 and [r.dense for r in state.report()] == [True, False, False, False]
    assert engine_calls == per_layer and stock_calls == []
    assert helpers.rel_err(out, stock[800]) > 1e-4, "the tolerance tells dense from sparse attention"


def test_dense_backend_stock_never_calls_the_engine_dense_path(make_hunyuan, hunyuan_inputs, monkeypatch):
    model = make_hunyuan()
    x = hunyuan_inputs(lengths=(12, 7))
    engine_calls, stock_calls = _count_dense_calls(monkeypatch)
    for config in (dict(warmup_steps=1), dict(warmup_steps=1, dense_backend="stock", dense_padding="mask"),
                   dict(warmup_steps=0, dense_layers=1)):
        state = dynamicrad.enable(model, block_size=32, regime="high", **config)
        assert state.config.dense_backend_for("cpu", torch.float32) == "stock"  # "auto" on the CPU, or "stock"
        stock_calls.clear()
        _forward(model, x)
        assert engine_calls == []
        assert len(stock_calls) == (1 if config["warmup_steps"] == 0 else 4) * (
            1 if config.get("dense_padding") == "mask" else 2)
        dynamicrad.disable(model)


@pytest.mark.parametrize("lengths", [(12, 7), (12, 12)], ids=["padded-12-7", "unpadded"])
def test_dense_backend_dynamicrad_dense_layer_in_sparse_step(make_hunyuan, hunyuan_inputs, helpers, monkeypatch,
                                                             lengths):
    """dense_layers=1, warmup_steps=0: layer 0 runs the engine's dense path (per length group), the
    other layers stay sparse; the result is the stock-backend model's within fp32 rounding."""
    x = hunyuan_inputs(lengths=lengths)
    engine_calls, stock_calls = _count_dense_calls(monkeypatch)
    outs = {}
    for backend in ("stock", "dynamicrad"):
        model = make_hunyuan()
        engine_calls.clear()
        stock_calls.clear()
        state = dynamicrad.enable(model, **SPARSE, mode="static-ratio", dense_layers=1, dense_backend=backend)
        outs[backend] = _forward(model, x)
        reports = state.report()
        assert [r.dense for r in reports] == [True, False, False, False]
        assert all(0 < r.kept < r.total for r in reports[1:])
        groups = sorted(set(lengths))
        if backend == "dynamicrad":
            assert engine_calls == [(sum(1 for n in lengths if n == m), VIDEO + m, m) for m in groups]
            assert stock_calls == []
        else:
            assert engine_calls == [] and len(stock_calls) == len(groups)
        dynamicrad.disable(model)
    assert helpers.rel_err(outs["dynamicrad"], outs["stock"]) < 1e-5


def test_dense_backend_dynamicrad_ignores_padded_text(make_hunyuan, hunyuan_inputs, monkeypatch):
    """The engine's dense path leaves padded prompt tokens out, as the stock mask does."""
    model = make_hunyuan()
    x = hunyuan_inputs(lengths=(12, 7))
    dynamicrad.enable(model, block_size=32, warmup_steps=1, dense_backend="dynamicrad")
    _expect_padding_ignored(model, x)


def test_dense_backend_dynamicrad_tiled3d_warmup(make_hunyuan, hunyuan_inputs, helpers):
    model = make_hunyuan()
    x = _wide(hunyuan_inputs(lengths=(12, 7)))
    ref = _forward(model, x)
    dynamicrad.enable(model, block_size=32, warmup_steps=1, token_order="tiled3d", dense_backend="dynamicrad")
    assert helpers.rel_err(_forward(model, x), ref) < 1e-5


def test_dense_backend_is_checked(make_hunyuan, helpers):
    model = make_hunyuan()
    hooks = helpers.hook_snapshot(model)
    with pytest.raises(ValueError, match="^dense_backend"):
        dynamicrad.enable(model, dense_backend="flash")
    with pytest.raises(ValueError) as info:
        dynamicrad.enable(model, dense_backend="dynamicrad", dense_padding="mask")
    assert "dense_backend" in str(info.value) and "dense_padding" in str(info.value)
    assert getattr(model, "dynamicrad_state", None) is None
    assert helpers.hook_snapshot(model) == hooks
