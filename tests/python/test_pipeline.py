"""A real diffusers WanPipeline built offline from tiny random components (no tokenizer or text
encoder: prompt embeddings are passed in; a tiny AutoencoderKLWan only provides the scale factors
since output_type="latent"), run stock, with DynamicRad and after disable().

height 128 x width 256 x 5 frames -> latents 4 x 2 x 16 x 32 -> 2 x 8 x 16 = 256 tokens (8 blocks).
With only two latent frames the "mid" LUT row keeps every block, so the tests use regime="high"."""

from __future__ import annotations

import pytest
import torch

import dynamicrad

STEPS = 3
OPTIONS = dict(warmup_steps=1, block_size=32, regime="high")


def _scheduler(name: str):
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    if name == "flow-euler":
        return FlowMatchEulerDiscreteScheduler(shift=3.0)
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def _vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    ).eval()


@pytest.fixture
def make_pipe(make_wan):
    from diffusers import WanPipeline

    def make(scheduler="flow-euler", two_stage=False):
        kwargs = dict(tokenizer=None, text_encoder=None, vae=_vae(), scheduler=_scheduler(scheduler),
                      transformer=make_wan(seed=0))
        if two_stage:
            kwargs.update(transformer_2=make_wan(seed=1), boundary_ratio=0.5)
        pipe = WanPipeline(**kwargs)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return make


def _generate(pipe) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    prompt_embeds = torch.randn(1, 8, 32, generator=g)
    negative_prompt_embeds = torch.randn(1, 8, 32, generator=g)
    with torch.no_grad():
        return pipe(
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds, height=128, width=256,
            num_frames=5, num_inference_steps=STEPS, guidance_scale=5.0, output_type="latent",
            generator=torch.Generator().manual_seed(42),
        ).frames


@pytest.mark.parametrize("scheduler", ["flow-euler", "unipc"])
def test_wan_pipeline(make_pipe, helpers, scheduler):
    pipe = make_pipe(scheduler)
    stock = _generate(pipe)
    assert stock.shape == (1, 4, 2, 16, 32)
    hooks = helpers.hook_snapshot(pipe.transformer)
    processors = helpers.processor_snapshot(pipe.transformer)

    state = dynamicrad.enable(pipe, **OPTIONS)
    assert pipe.transformer.dynamicrad_state is state
    latents = _generate(pipe)
    # three steps (0 warm-up, 1, 2), two guidance calls each
    assert (state.step, state.call_in_step) == (STEPS - 1, 1)
    reports = state.report()
    assert [r.step for r in reports] == [STEPS - 1] * 3
    assert reports[0].dense
    for r in reports[1:]:
        # report() sums the step's two guidance calls: 2 calls x 2 heads x 8^2 blocks
        assert not r.dense and r.total == 2 * 2 * 8 * 8
        assert 0 < r.sparsity < 1
    assert torch.isfinite(latents).all()
    assert 0 < helpers.rel_err(latents, stock) < 0.2

    # A second generation starts over (the timestep rises) and repeats the first exactly.
    assert torch.equal(_generate(pipe), latents)

    dynamicrad.disable(pipe)
    assert torch.equal(_generate(pipe), stock)
    assert helpers.hook_snapshot(pipe.transformer) == hooks
    assert all(helpers.processor_snapshot(pipe.transformer)[n] is p for n, p in processors.items())
    assert not hasattr(pipe.transformer, "dynamicrad_state")  # the attribute is gone, not None


def test_wan_pipeline_density_one(make_pipe, helpers):
    pipe = make_pipe()
    stock = _generate(pipe)
    state = dynamicrad.enable(pipe, **helpers.DENSITY_ONE)
    assert helpers.rel_err(_generate(pipe), stock) < 1e-5
    assert all(not r.dense and r.sparsity == 0 for r in state.report())


def test_wan22_two_stage_pipeline(make_pipe, helpers):
    """boundary_ratio 0.5: the high-noise transformer runs the first steps, transformer_2 the rest;
    one state patches both and counts steps across the switch."""
    pipe = make_pipe(two_stage=True)
    calls = {"transformer": 0, "transformer_2": 0}
    handles = [getattr(pipe, n).register_forward_pre_hook(lambda *a, n=n: calls.__setitem__(n, calls[n] + 1))
               for n in calls]
    stock = _generate(pipe)
    assert calls["transformer"] > 0 and calls["transformer_2"] > 0, "both stages must run"
    state = dynamicrad.enable(pipe, **OPTIONS)
    assert pipe.transformer.dynamicrad_state is state and pipe.transformer_2.dynamicrad_state is state
    latents = _generate(pipe)
    assert state.step == STEPS - 1
    assert torch.isfinite(latents).all() and 0 < helpers.rel_err(latents, stock) < 0.2
    dynamicrad.disable(pipe)
    assert not hasattr(pipe.transformer, "dynamicrad_state") and not hasattr(pipe.transformer_2, "dynamicrad_state")
    assert torch.equal(_generate(pipe), stock)
    for h in handles:
        h.remove()


def test_a_generation_after_an_interrupted_one_starts_with_the_warmup(make_pipe):
    """A generation is recognised by the scheduler setting its timesteps, not only by a rising
    timestep: after an interrupted run (the transformer left at a low timestep), a new one that
    starts below it (as video-to-video with strength < 1 does) still begins with the dense warm-up
    steps. The wrapper keeps set_timesteps' signature (diffusers inspects it for sigmas support)
    and disable() removes it."""
    import inspect

    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import retrieve_timesteps

    pipe = make_pipe()
    scheduler = pipe.scheduler
    signature = inspect.signature(scheduler.set_timesteps)
    assert "set_timesteps" not in vars(scheduler)
    state = dynamicrad.enable(pipe, **{**OPTIONS, "warmup_steps": 2})
    assert inspect.signature(scheduler.set_timesteps) == signature

    # an interrupted generation: three calls of falling timesteps, the last one low
    state.step, state.call_in_step, state._last_timestep = 2, 0, 100.0
    retrieve_timesteps(scheduler, STEPS, "cpu", sigmas=[1.0, 0.6, 0.3])  # HunyuanVideo's pipeline path
    assert (state.step, state.call_in_step, state._last_timestep) == (0, 0, None)
    # left below nothing: without the reset, the new generation's first (lower) timestep would count
    # as step 3, past the warm-up
    state.step, state._last_timestep = 2, 1e9

    seen = []
    hook = pipe.transformer.register_forward_pre_hook(lambda *a: seen.append((state.step, state.is_dense(1))))
    _generate(pipe)
    hook.remove()
    # two guidance calls a step; the hook runs before the entry hook counts the call: the first
    # call of the generation sees the state that set_timesteps reset
    assert seen[0] == (0, True)

    dynamicrad.disable(pipe)
    assert "set_timesteps" not in vars(scheduler)
    assert inspect.signature(scheduler.set_timesteps) == signature


def test_disable_keeps_a_set_timesteps_wrapper_installed_by_someone_else(make_pipe):
    pipe = make_pipe()
    calls = []
    original = pipe.scheduler.set_timesteps

    def theirs(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    pipe.scheduler.set_timesteps = theirs
    state = dynamicrad.enable(pipe, **OPTIONS)
    state.step = 5
    pipe.scheduler.set_timesteps(STEPS)
    assert state.step == 0 and calls == [1]
    dynamicrad.disable(pipe)
    assert pipe.scheduler.set_timesteps is theirs


def test_a_failed_install_on_the_second_transformer_undoes_the_first(make_pipe, helpers, monkeypatch):
    """Wan2.2: enable() installs on transformer, then transformer_2; a failure on the second leaves
    both exactly as they were (processors, hooks, no state attribute, the scheduler's own method)."""
    from dynamicrad.integrations import wan

    pipe = make_pipe(two_stage=True)
    snapshots = [(helpers.hook_snapshot(m), helpers.processor_snapshot(m)) for m in (pipe.transformer, pipe.transformer_2)]
    install = wan.install

    def failing(model, state, first_layer=0):
        if model is pipe.transformer_2:
            raise RuntimeError("install failed")
        install(model, state, first_layer)

    monkeypatch.setattr(wan, "install", failing)
    with pytest.raises(RuntimeError, match="install failed"):
        dynamicrad.enable(pipe, **OPTIONS)
    for model, (hooks, processors) in zip((pipe.transformer, pipe.transformer_2), snapshots):
        assert helpers.hook_snapshot(model) == hooks
        assert all(helpers.processor_snapshot(model)[n] is p for n, p in processors.items())
        assert not hasattr(model, "dynamicrad_state")
    assert "set_timesteps" not in vars(pipe.scheduler)
    monkeypatch.setattr(wan, "install", install)
    dynamicrad.disable(dynamicrad.enable(pipe, **OPTIONS) and pipe)  # and it can be enabled afterwards
