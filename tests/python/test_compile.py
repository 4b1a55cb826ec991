"""torch.compile of DynamicRad-enabled transformers across denoising steps: the run-time layer
dispatch keeps step and layer out of the graph, so a compiled model neither recompiles per step nor
per block, and gives the eager bits (aot_eager: the same kernels as eager)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import dynamicrad

TIMESTEPS = (900.0, 800.0, 700.0, 600.0)  # two dense warm-up steps, then two sparse ones


def _steps(model, inputs: dict, after_step=None) -> list:
    """Outputs of one transformer call per timestep of TIMESTEPS; `after_step()` runs after each."""
    outs = []
    with torch.no_grad():
        for t in TIMESTEPS:
            kw = dict(inputs)
            kw["timestep"] = torch.full_like(inputs["timestep"], t)
            outs.append(model(**kw).sample)
            if after_step is not None:
                after_step()
    return outs


def _compiled_steps(model, inputs: dict, how: str) -> tuple:
    """Outputs of every step and the number of graphs compiled after each."""
    torch._dynamo.reset()
    counters.clear()
    if how == "regional":
        model.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
        run = model
    else:
        run = torch.compile(model, backend="aot_eager")
    graphs = []
    outs = _steps(run, inputs, lambda: graphs.append(counters["stats"]["unique_graphs"]))
    torch._dynamo.reset()
    return outs, graphs


@pytest.mark.parametrize("how", ["regional", "whole"])
def test_compiled_wan_over_steps(make_wan, wan_inputs, how):
    x = wan_inputs(batch=2)
    model = make_wan(num_layers=4)
    state = dynamicrad.enable(model, warmup_steps=2, block_size=32, regime="high")
    eager = _steps(model, x)
    sparse = [r.sparsity for r in state.report()]
    assert sparse[0] == 0.0 and min(sparse[1:]) > 0.3  # the dense first layer, then sparse layers
    state.reset()
    compiled, graphs = _compiled_steps(model, x, how)
    for step, (a, b) in enumerate(zip(compiled, eager)):
        assert torch.equal(a, b), f"step {step}"
    # regional: one graph for all four blocks; whole: one graph after the eager entry hook
    assert graphs == [1] * len(TIMESTEPS), graphs
    assert [r.sparsity for r in state.report()] == sparse
    assert state.step == len(TIMESTEPS) - 1


@pytest.mark.parametrize("how", ["regional", "whole"])
def test_compiled_hunyuan_over_steps(make_hunyuan, hunyuan_inputs, how):
    """Prompt lengths 12 and 7 in one batch: the grouping by length happens when the operator runs."""
    x = hunyuan_inputs()
    model = make_hunyuan()
    state = dynamicrad.enable(model, warmup_steps=2, block_size=32, regime="high", dense_layers=0)
    eager = _steps(model, x)
    state.reset()
    compiled, graphs = _compiled_steps(model, x, how)
    for step, (a, b) in enumerate(zip(compiled, eager)):
        assert torch.equal(a, b), f"step {step}"
    assert len(set(graphs)) == 1, f"recompiled after the first step: {graphs}"
    assert state.mean_sparsity() > 0.1


def test_block_called_alone_is_refused(wan, wan_inputs):
    """The dispatch counts a transformer's self-attention calls; a block called outside the
    transformer has no geometry and is refused, not given another layer's layout."""
    dynamicrad.enable(wan, warmup_steps=0, block_size=32, regime="high")
    x = wan_inputs()
    with torch.no_grad():
        wan(**x)
        hidden = torch.randn(1, 320, 128)
        with pytest.raises(ValueError, match="outside the transformer's forward"):
            wan.blocks[1].attn1(hidden, rotary_emb=None)


def test_inductor_regional_compile(make_wan, wan_inputs, helpers):
    """The real compiler (inductor) takes the dispatch as an opaque graph input: it generates code
    around it (and pickles it for its benchmark harness) and matches eager within float rounding."""
    x = wan_inputs()
    model = make_wan()
    state = dynamicrad.enable(model, warmup_steps=1, block_size=32, regime="high")
    eager = _steps(model, x)
    state.reset()
    torch._dynamo.reset()
    model.compile_repeated_blocks(fullgraph=True)
    try:
        compiled = _steps(model, x)
    finally:
        torch._dynamo.reset()
    for a, b in zip(compiled, eager):
        assert helpers.rel_err(a, b) < 1e-4
    assert state.mean_sparsity() > 0.3


def test_compile_then_enable_then_disable(make_wan, wan_inputs):
    """Compiling first is fine too: enable() and disable() swap the processors under the compiled
    blocks, which then recompile for the new processor; disable() gives the stock bits back."""
    x = wan_inputs()
    model = make_wan()
    stock = _steps(model, x)
    torch._dynamo.reset()
    model.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    try:
        assert all(torch.equal(a, b) for a, b in zip(_steps(model, x), stock))
        # fused_norm=False: the stock Q/K norm, so that the warm-up steps give the stock bits
        state = dynamicrad.enable(model, warmup_steps=2, block_size=32, regime="high", fused_norm=False)
        sparse = _steps(model, x)
        assert all(torch.equal(a, b) for a, b in zip(sparse[:2], stock[:2]))  # warm-up: the stock bits
        assert not torch.equal(sparse[3], stock[3]) and state.mean_sparsity() > 0.3
        dynamicrad.disable(model)
        assert all(torch.equal(a, b) for a, b in zip(_steps(model, x), stock))
    finally:
        torch._dynamo.reset()
