"""What ``enable()`` refuses or guards against, on the tiny CPU models: options of the wrong kind or
range (named in the message), options that would be ignored, targets it cannot serve, a config
changed after enable(), norm weights that live elsewhere (offloading), and diffusers' attention
backend switch reaching the stock processors DynamicRad keeps."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import dynamicrad
from dynamicrad import DynamicRadConfig

SPARSE = dict(warmup_steps=0, dense_layers=0, block_size=32, regime="high", mode="static-ratio")


def _forward(model, inputs):
    with torch.no_grad():
        return model(**inputs).sample


# ---- option kinds and ranges ------------------------------------------------------------------
@pytest.mark.parametrize("bad, error, match", [
    (dict(selection={"r_near": None}), TypeError, r"^selection.r_near = None: must be a number"),
    (dict(selection={"r_near": "0.3"}), TypeError, r"^selection.r_near = '0.3': must be a number"),
    (dict(selection={"r_far": True}), TypeError, r"^selection.r_far = True: must be a number"),
    (dict(selection={"r_near": float("nan")}), ValueError, r"^selection.r_near = nan: must be finite"),
    (dict(prior={"gamma": "2"}), TypeError, r"^prior.gamma = '2': must be a number"),
    (dict(prior={"dense_adjacent": 1}), TypeError, r"^prior.dense_adjacent = 1: must be True or False"),
    (dict(lut=123), TypeError, r"^lut = 123: must be a path"),
    (dict(lut_geometry=5), TypeError, r"^lut_geometry = 5: must be a preset name"),
    (dict(threads=2**40), ValueError, r"^threads = 1099511627776: allowed range \[0, 1024\]"),
    (dict(threads=1025), ValueError, r"^threads = 1025: allowed range \[0, 1024\]"),
    (dict(mode="static-ratio", selection={"tau_near": 0.1}), ValueError,
     r"^selection.tau_near: applies to mode dynamic-threshold only, but the mode is static-ratio"),
])
def test_bad_option_kinds_name_the_field(bad, error, match):
    with pytest.raises(error, match=match):
        DynamicRadConfig(**bad)


def test_an_unknown_option_is_named_with_a_suggestion(wan):
    with pytest.raises(TypeError, match=r"^regim: unknown option \(did you mean 'regime'\?\); allowed: regime, mode"):
        dynamicrad.enable(wan, regim="high")
    with pytest.raises(TypeError, match=r"^colour: unknown option; allowed: "):
        dynamicrad.enable(wan, colour="red")
    assert not hasattr(wan, "dynamicrad_state")


def test_config_must_be_a_config(wan):
    with pytest.raises(TypeError, match=r"^config: must be a DynamicRadConfig, got dict"):
        dynamicrad.enable(wan, {"regime": "high"})
    assert not hasattr(wan, "dynamicrad_state")


def test_selection_fields_of_the_other_mode_are_refused_not_ignored(wan):
    """The regime's default mode decides which selection fields are read: "high" runs
    dynamic-threshold (taus), "mid" static-ratio (ratios); an override of the other mode would do
    nothing."""
    with pytest.raises(ValueError, match=r"^selection.r_near: applies to mode static-ratio only, but the mode is "
                                         r"dynamic-threshold \(regime 'high''s default\)"):
        dynamicrad.enable(wan, regime="high", selection={"r_near": 0.5})
    with pytest.raises(ValueError, match=r"^selection.tau_near: applies to mode dynamic-threshold only, but the mode "
                                         r"is static-ratio \(regime 'mid''s default\)"):
        dynamicrad.enable(wan, regime="mid", selection={"tau_near": 0.1})
    assert not hasattr(wan, "dynamicrad_state")
    state = dynamicrad.enable(wan, regime="high", selection={"tau_near": 0.01})  # the mode's own field
    dynamicrad.disable(wan)
    assert state.config.selection["tau_near"] == 0.01


def test_dense_layers_beyond_the_model_are_refused(wan, make_hunyuan):
    with pytest.raises(ValueError, match=r"^dense_layers = 4: the transformer has 3 self-attention layers; "
                                         r"allowed range \[0, 3\]"):
        dynamicrad.enable(wan, dense_layers=4)
    dynamicrad.disable(dynamicrad.enable(wan, dense_layers=3) and wan)  # every layer dense is allowed
    with pytest.raises(ValueError, match=r"^dense_layers = 5: the transformer has 4 "):
        dynamicrad.enable(make_hunyuan(), dense_layers=5)  # 2 dual-stream + 2 single-stream blocks


# ---- the config cannot change under an enabled pipeline -----------------------------------------
def test_the_defaults_are_the_documented_ones():
    """The defaults DynamicRadConfig documents (the paper's reference: 12 dense warm-up steps, the
    first layer dense)."""
    c = DynamicRadConfig()
    assert (c.regime, c.mode, c.lut, c.lut_geometry) == ("mid", None, None, None)
    assert (c.warmup_steps, c.dense_layers, c.refresh_interval, c.block_size, c.threads) == (12, 1, 1, 128, 0)
    assert (c.dense_padding, c.dense_backend, c.token_order) == ("drop", "auto", "raster")
    assert (c.keep_layouts, c.fused_rotary, c.fused_norm, c.fused_pooling) == (False, True, True, True)
    assert c.prior == {} and c.selection == {}


def test_the_config_is_frozen_and_owns_its_overrides(wan, wan_inputs):
    prior = {"gamma": 2.0}
    config = DynamicRadConfig(**SPARSE, prior=prior)
    state = dynamicrad.enable(wan, config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.config.block_size = 64
    prior["gamma"] = 9.0  # the caller's dict changes later: the config keeps its own copy
    assert state.config.prior["gamma"] == 2.0
    with pytest.raises(TypeError):
        state.config.prior["gamma"] = 3.0
    out = _forward(wan, wan_inputs())
    dynamicrad.disable(wan)
    dynamicrad.enable(wan, **SPARSE, prior={"gamma": 2.0})
    assert torch.equal(_forward(wan, wan_inputs()), out)
    # a changed copy is the way to other options
    other = dataclasses.replace(config, block_size=64)
    assert other.block_size == 64 and config.block_size == 32 and other.prior == {"gamma": 2.0}


# ---- targets ------------------------------------------------------------------------------------
def test_a_compiled_transformer_is_refused_with_the_order_to_follow(wan):
    compiled = torch.compile(wan)
    with pytest.raises(TypeError, match=r"already compiled; call dynamicrad.enable\(\) before torch.compile"):
        dynamicrad.enable(compiled)
    assert not hasattr(wan, "dynamicrad_state")


def test_a_custom_processor_is_refused_not_silently_replaced(wan, make_hunyuan, helpers):
    class MyProcessor:
        def __call__(self, *args, **kwargs):  # pragma: no cover - never runs
            raise AssertionError

    processors = helpers.processor_snapshot(wan)
    wan.blocks[1].attn1.set_processor(MyProcessor())
    with pytest.raises(TypeError, match=r"^blocks.1.attn1: its attention processor is MyProcessor, not the stock "
                                        r"WanAttnProcessor"):
        dynamicrad.enable(wan)
    assert not hasattr(wan, "dynamicrad_state")
    # nothing was installed: the other layers keep their processors
    assert wan.blocks[0].attn1.processor is processors["blocks.0.attn1"]
    hunyuan = make_hunyuan()
    hunyuan.single_transformer_blocks[0].attn.set_processor(MyProcessor())
    with pytest.raises(TypeError, match=r"^single_transformer_blocks.0.attn: its attention processor is MyProcessor"):
        dynamicrad.enable(hunyuan)


def test_set_attention_backend_reaches_the_stock_processors(wan, wan_inputs, helpers):
    """diffusers sets ``_attention_backend`` on every processor that has one; DynamicRad's processors
    pass it to the stock processors whose attention the dense layers and warm-up steps run, and
    disable() hands those back with it."""
    stock = [block.attn1.processor for block in wan.blocks]
    dynamicrad.enable(wan, **{**SPARSE, "dense_layers": 1})
    wan.set_attention_backend("native")
    assert all(str(p._attention_backend) == str(block.attn1.processor._attention_backend)
               for p, block in zip(stock, wan.blocks))
    assert all(p._attention_backend is not None for p in stock)
    assert torch.isfinite(_forward(wan, wan_inputs())).all()
    wan.reset_attention_backend()
    assert all(p._attention_backend is None for p in stock)
    dynamicrad.disable(wan)
    assert [block.attn1.processor for block in wan.blocks] == stock


def test_cuda_entry_checks_come_before_the_warmup(wan):
    """What the CUDA engine would refuse at the first sparse step is refused at the transformer's
    entry (the warm-up steps would otherwise run first)."""
    state = dynamicrad.enable(wan, block_size=32, warmup_steps=12)
    if dynamicrad.built_with_cuda():
        with pytest.raises(ValueError, match=r"^block_size = 32: the CUDA engine takes 64 or 128"):
            state.check_device(torch.device("cuda"), 128)
        dynamicrad.disable(wan)
        state = dynamicrad.enable(wan, block_size=64)
        with pytest.raises(ValueError, match=r"attention_head_dim = 80: the CUDA engine takes 64 or 128"):
            state.check_device(torch.device("cuda"), 80)
        state.check_device(torch.device("cuda"), 128)
    else:
        with pytest.raises(RuntimeError, match=r"built without CUDA"):
            state.check_device(torch.device("cuda"), 128)
    state.check_device(torch.device("cpu"), 80)  # the CPU engine takes these


# ---- norm weights elsewhere (CPU offload) -------------------------------------------------------
def _offload_norms(model, norms: list) -> list:
    """accelerate's cpu_offload in miniature: each norm's weight lives on "meta" and is moved in by a
    forward pre-hook, out again after the call. Returns the hook handles."""
    handles = []
    for norm in norms:
        real = norm.weight.detach().clone()
        norm.weight = torch.nn.Parameter(torch.empty_like(real, device="meta"), requires_grad=False)

        def load(module, args, real=real):
            module.weight = torch.nn.Parameter(real, requires_grad=False)

        def unload(module, args, output, real=real):
            module.weight = torch.nn.Parameter(torch.empty_like(real, device="meta"), requires_grad=False)

        handles += [norm.register_forward_pre_hook(load), norm.register_forward_hook(unload)]
    return handles


def test_offloaded_wan_norm_weights_take_the_stock_norm(make_wan, wan_inputs):
    """A norm weight on "meta" (offloaded) is not read by the one-pass kernel: the processor calls
    the norm module, whose hooks load the weight; the result is that of fused_norm=False."""
    x = wan_inputs()
    reference = make_wan()
    dynamicrad.enable(reference, **SPARSE, fused_norm=False)
    want = _forward(reference, x)
    model = make_wan()
    _offload_norms(model, [n for b in model.blocks for n in (b.attn1.norm_q, b.attn1.norm_k)])
    dynamicrad.enable(model, **SPARSE)
    assert torch.equal(_forward(model, x), want)
    assert all(b.attn1.norm_q.weight.device.type == "meta" for b in model.blocks)


def test_offloaded_hunyuan_norm_weights_take_the_stock_norm(make_hunyuan, hunyuan_inputs):
    x = hunyuan_inputs()
    reference = make_hunyuan()
    dynamicrad.enable(reference, **SPARSE, fused_norm=False)
    want = _forward(reference, x)
    model = make_hunyuan()
    layers = [b.attn for b in model.transformer_blocks] + [b.attn for b in model.single_transformer_blocks]
    _offload_norms(model, [n for a in layers for n in (a.norm_q, a.norm_k)])
    dynamicrad.enable(model, **SPARSE)
    assert torch.equal(_forward(model, x), want)


def test_files_that_cannot_be_opened_raise_oserror(wan, wan_inputs, tmp_path):
    """A path that cannot be read or written is an OSError naming it (bad content stays ValueError)."""
    with pytest.raises(OSError, match=r"missing.json: cannot open for reading"):
        dynamicrad.enable(wan, lut=str(tmp_path / "missing.json"))
    with pytest.raises(OSError, match=r"missing.json: cannot open for reading"):  # a Path reaches the reader too
        dynamicrad.enable(wan, lut=tmp_path / "missing.json")
    state = dynamicrad.enable(wan, **SPARSE)
    _forward(wan, wan_inputs())
    with pytest.raises(OSError, match=r"no_folder/mask.png: cannot open for writing"):
        state.save_mask_png(tmp_path / "no_folder" / "mask.png", layer=2)
    with pytest.raises(ValueError, match=r"^layer = 3: allowed range \[0, 2\]"):
        state.save_mask_png(tmp_path / "mask.png", layer=3)
    state.save_mask_png(tmp_path / "mask.png", layer=2)
    assert (tmp_path / "mask.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bad.json").write_text("{ not json")
    dynamicrad.disable(wan)
    with pytest.raises(ValueError, match=r"bad.json"):
        dynamicrad.enable(wan, lut=str(tmp_path / "bad.json"))
