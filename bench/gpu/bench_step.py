"""One denoising step of a full-size video transformer, stock attention against DynamicRad.

Builds the transformer from the model's diffusers config with random bf16 weights directly on the
GPU (no download, no checkpoint), then times one transformer call (batch 1; a classifier-free
guidance step is two such calls) with:
  - stock attention: diffusers' processor through torch SDPA, its default backend and cuDNN;
  - DynamicRad at each target sparsity (static-ratio, ratios found by bisection on the engine so
    that the sparse layers keep the target share of block pairs; the first layer stays dense).
Also: DynamicRad's own overhead (layout selection per layer, timed alone), the GPU memory of both
runs, and the modelled 50-step total with the reference warm-up: 12 dense steps (DynamicRad's own
warm-up step, timed: every layer dense), then 38 sparse ones. DynamicRad runs with its defaults, so
its dense layers and warm-up steps run on its own kernel (dense_backend "auto"); --stock-dense-at
adds a run with them on the stock attention.

With --compile both, the same measurements are repeated after diffusers' regional compilation
(``transformer.compile_repeated_blocks(fullgraph=True)``, inductor) of the same model: stock and
DynamicRad are then both compiled, so only the attention differs between them.

    python bench/gpu/bench_step.py --model wan --out results/step.json
    python bench/gpu/bench_step.py --model hunyuan
    python bench/gpu/bench_step.py --model wan --sparsities 0.85 --compile both
    python bench/gpu/bench_step.py --model wan --sparsities 0.85 --profile   # + GPU time by kernel kind
    python bench/gpu/bench_step.py --tiny --device cpu      # smoke test of the script

Needs: an sm_90 GPU, torch, diffusers, and the dynamicrad package (pip install ., or
PYTHONPATH=python with DYNAMICRAD_LIBRARY pointing at a built libdynamicrad_c.so).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import dynamicrad
from gpu_clocks import ClockSampler, format_clocks
from gpu_timing import gpu_seconds
from kernel_breakdown import format_breakdown, profile_call

# diffusers configs of the released checkpoints (transformer/config.json).
WAN_14B = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
)
HUNYUAN_13B = dict(
    in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128, num_layers=20,
    num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2, patch_size_t=1, qk_norm="rms_norm",
    guidance_embeds=True, text_embed_dim=4096, pooled_projection_dim=768, rope_theta=256.0, rope_axes_dim=(16, 56, 56),
)


# Tiny versions of both (--tiny): a smoke test of this script, also on the CPU.
WAN_TINY = dict(WAN_14B, num_attention_heads=2, attention_head_dim=64, text_dim=64, freq_dim=32, ffn_dim=128,
                num_layers=3, in_channels=4, out_channels=4, rope_max_seq_len=64)
HUNYUAN_TINY = dict(HUNYUAN_13B, in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=64,
                    num_layers=2, num_single_layers=2, num_refiner_layers=1, text_embed_dim=64,
                    pooled_projection_dim=16, rope_axes_dim=(16, 24, 24))


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def random_init(model: torch.nn.Module, device: str) -> None:
    """Weights ~ N(0, 1/fan_in) for matrices (activations keep their scale), norms 1, biases 0."""
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
            elif name.endswith("bias"):
                p.zero_()
            elif "scale_shift_table" in name:
                p.normal_(0.0, 0.02, generator=gen)
            else:
                p.fill_(1.0)


def build(model_name: str, tiny: bool, device: str, layers=None) -> tuple:
    """The transformer (bf16, random weights, on `device`) and the keyword inputs of one call;
    ``layers``: keep that many blocks of each kind (a quick check, not the model's step)."""
    from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel

    if model_name == "wan":
        cls, config = WanTransformer3DModel, WAN_TINY if tiny else WAN_14B
        latents = (1, 16, 21, 90, 160)  # 720p x 81 frames: (81 - 1) / 4 + 1 latent frames, 720/8 x 1280/8
    else:
        cls, config = HunyuanVideoTransformer3DModel, HUNYUAN_TINY if tiny else HUNYUAN_13B
        latents = (1, 16, 33, 90, 160)  # 720p x 129 frames
    if tiny:
        latents = (1, 4, 5, 32, 32)
    if layers is not None:
        config = dict(config, num_layers=layers, **({} if model_name == "wan" else {"num_single_layers": layers}))
    text_dim = config.get("text_dim", config.get("text_embed_dim"))
    with torch.device("meta"):
        model = cls(**config)
    model = model.to(dtype=torch.bfloat16).to_empty(device=device)
    keep_fp32 = getattr(cls, "_keep_in_fp32_modules", None) or []
    for name, module in model.named_modules():
        if any(name.split(".")[-1] == k or name == k for k in keep_fp32):
            module.float()
    random_init(model, device)
    if model_name == "wan":
        # Buffers computed in __init__ (the rotary tables) were lost on the meta device: rebuild them.
        fresh = type(model.rope)(config["attention_head_dim"], config["patch_size"], config["rope_max_seq_len"])
        model.rope = fresh.to(device)
    model.eval().requires_grad_(False)
    gen = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(latents, device=device, dtype=torch.bfloat16, generator=gen)
    if model_name == "wan":
        inputs = dict(
            hidden_states=x, timestep=torch.tensor([500.0], device=device),
            encoder_hidden_states=torch.randn(1, 512, text_dim, device=device, dtype=torch.bfloat16, generator=gen),
        )
    else:
        mask = torch.zeros(1, 256, dtype=torch.int64, device=device)
        mask[:, :120] = 1  # a 120-token prompt padded to 256, as the pipeline's tokenizer does
        inputs = dict(
            hidden_states=x, timestep=torch.tensor([500.0], device=device),
            encoder_hidden_states=torch.randn(1, 256, text_dim, device=device, dtype=torch.bfloat16, generator=gen),
            encoder_attention_mask=mask,
            pooled_projections=torch.randn(1, config["pooled_projection_dim"], device=device, dtype=torch.bfloat16,
                                           generator=gen),
            guidance=torch.tensor([6016.0], device=device, dtype=torch.bfloat16),
        )
    n_params = sum(p.numel() for p in model.parameters())
    return model, inputs, n_params


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_call(model, inputs, repeats: int) -> tuple:
    """Mean and min seconds of one forward over `repeats` timed runs after one warm-up; the output;
    the GPU's clock, power and temperature during the timed runs (gpu_clocks.py; None without NVML)."""
    with torch.no_grad():
        out = model(**inputs).sample
        synchronize()
        times = []
        with ClockSampler() as clocks:
            for _ in range(repeats):
                start = time.perf_counter()
                out = model(**inputs).sample
                synchronize()
                times.append(time.perf_counter() - start)
    return sum(times) / len(times), min(times), out, clocks.summary()


def ratio_for(geometry: dynamicrad.Geometry, prior: dict, target: float, device: str) -> tuple:
    """Static-ratio r (r_near = r_far = r) whose layouts reach `target` sparsity (the budget of
    static-ratio depends only on the prior, so random Q/K suffice). Returns (r, achieved)."""
    engine = dynamicrad.Engine(geometry, prior=prior, device=device)
    q = torch.randn(1, geometry.tokens, geometry.heads, geometry.head_dim, device=device, dtype=torch.bfloat16)
    k = torch.randn_like(q)

    def sparsity(r):
        engine.select(q, k, dynamicrad.Selection("static-ratio", r_near=r, r_far=r), 0)
        kept, total = engine.kept(0)
        return 1.0 - kept / total

    lo, hi = 0.0, 1.0
    if sparsity(0.0) < target:
        achieved = sparsity(0.0)
        engine.close()
        return 0.0, achieved
    for _ in range(14):
        mid = (lo + hi) / 2
        if sparsity(mid) >= target:
            lo = mid
        else:
            hi = mid
    achieved = sparsity(lo)
    engine.close()
    return lo, achieved


def selection_overhead(state, layers: int, device: str, fused_pooling: bool = False, repeats: int = 10) -> tuple:
    """Seconds of DynamicRad's own work for `layers` layers, timed alone on layer-shaped random Q/K (a
    slot no layer uses): the engine's select(). With fused pooling (HunyuanVideo's processor pools the
    video blocks in the Q/K norm + rotary pass), select() from those block means, plus what pooling
    adds to that pass for Q and K (norm_rotary_pooled against norm_rotary, interleaved rounds).
    Returns (select seconds, seconds added to the norm + rotary pass), both for all `layers`."""
    engine = next(iter(state._engines.values()))
    g = engine.geometry
    selection = state.selection(g)
    q = torch.randn(1, g.tokens, g.heads, g.head_dim, device=device, dtype=torch.bfloat16)
    k = torch.randn_like(q)
    slot = 0
    pooled, added = None, 0.0
    if fused_pooling:
        video = g.frames * g.height * g.width
        blocks = video // g.block_size if g.text_tokens else -(-video // g.block_size)
        weight = (1 + 0.1 * torch.randn(g.head_dim, device=device)).to(torch.bfloat16)
        cos = torch.randn(video, g.head_dim, device=device)
        sin = torch.randn(video, g.head_dim, device=device)
        args = (1e-6, cos, sin, "hunyuan_video", video)

        def plain():
            return [dynamicrad.norm_rotary(x, weight, *args) for x in (q, k)]

        def fused():
            return [dynamicrad.norm_rotary_pooled(x, weight, *args, g.block_size, blocks) for x in (q, k)]

        pooled = tuple(p for _, p in fused())
        rounds = {"plain": [], "fused": []}
        for _ in range(5):
            for name, fn in (("plain", plain), ("fused", fused)):
                rounds[name].append(gpu_seconds(fn, 4))
        added = max(0.0, statistics.median(rounds["fused"]) - statistics.median(rounds["plain"])) * layers
    engine.select(q, k, selection, slot, pooled=pooled, pool_block=g.block_size)
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        engine.select(q, k, selection, slot, pooled=pooled, pool_block=g.block_size)
    synchronize()
    return (time.perf_counter() - start) / repeats * layers, added


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_bytes() -> int:
    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0


def profiled(model, inputs, enabled: bool):
    """GPU kernel time of one call by kind of kernel (kernel_breakdown.py), or None."""
    if not enabled:
        return None
    with torch.no_grad():
        return profile_call(lambda: model(**inputs))


# DynamicRad configurations besides its defaults ("default"), by name: the enable() options they
# change. Each is timed at one sparsity given on the command line.
VARIANTS = {
    "default": {},
    # Q/K preparation, to separate the gains: the one-pass rotary after the stock norm (Wan only),
    # the stock processor's arithmetic.
    "rotary": dict(fused_norm=False, fused_pooling=False),
    "stock": dict(fused_rotary=False, fused_norm=False, fused_pooling=False),
    # HunyuanVideo only: selection pools Q and K itself.
    "unfused pool": dict(fused_pooling=False),
    # Dense layers and warm-up steps on the stock attention.
    "stock dense": dict(dense_backend="stock"),
    # No dense layer: every layer sparse (the reference keeps the first one dense).
    "all sparse": dict(dense_layers=0),
}
_VARIANT_MODELS = {"rotary": ("wan",), "unfused pool": ("hunyuan",)}


def run(model_name: str, sparsities: list, repeats: int, tiny: bool, device: str, compile_mode: str = "none",
        profile: bool = False, layers=None, variants: list = ()) -> dict:
    """variants: (sparsity, name of VARIANTS) pairs timed besides the defaults at ``sparsities``."""
    t0 = time.time()
    model, inputs, n_params = build(model_name, tiny, device, layers)
    log(f"[{model_name}] built {n_params / 1e9:.2f} B parameters in {time.time() - t0:.1f} s")
    result = {"model": model_name, "parameters": n_params,
              "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "latents": list(inputs["hidden_states"].shape), "modes": {}}
    if compile_mode in ("none", "both"):
        result["modes"]["eager"] = measure(model, inputs, model_name, sparsities, repeats, tiny, device, "eager",
                                           profile, variants)
    if compile_mode in ("regional", "both"):
        # Inductor, one graph per block class, shared by all blocks (and, through the run-time layer
        # dispatch, by all of DynamicRad's layers and steps). The first call of each configuration
        # compiles; time_call's warm-up call absorbs it.
        model.compile_repeated_blocks(fullgraph=True)
        result["modes"]["compiled"] = measure(model, inputs, model_name, sparsities, repeats, tiny, device,
                                              "compiled", profile, variants)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def measure(model, inputs, model_name: str, sparsities: list, repeats: int, tiny: bool, device: str,
            label: str, profile: bool = False, variants: list = ()) -> dict:
    """Stock (default SDPA, cuDNN) and DynamicRad at each sparsity on one model, as it is (eager or
    compiled). With ``profile``, also the GPU time of one call of each by kind of kernel."""
    tag = f"[{model_name}, {label}]"
    result = {}
    reset_peak()
    t0 = time.time()
    mean, best, dense_out, clocks = time_call(model, inputs, repeats)
    result["stock_sdpa_default"] = {"mean_s": mean, "min_s": best, "peak_bytes": peak_bytes(),
                                    "first_call_s": time.time() - t0 - mean * repeats, "clocks": clocks}
    log(f"{tag} stock SDPA (default backend): {mean:.3f} s; {format_clocks(clocks)}")
    result["stock_sdpa_cudnn"] = None
    if device == "cuda":
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            mean, best, _, clocks = time_call(model, inputs, repeats)
            breakdown = profiled(model, inputs, profile)
        result["stock_sdpa_cudnn"] = {"mean_s": mean, "min_s": best, "breakdown": breakdown, "clocks": clocks}
        log(f"{tag} stock SDPA (cuDNN): {mean:.3f} s; {format_clocks(clocks)}")
        if breakdown:
            log(format_breakdown(f"{tag} stock (cuDNN)", breakdown))
    dense = min(x["mean_s"] for x in (result["stock_sdpa_default"], result["stock_sdpa_cudnn"]) if x)
    result["stock_best_s"] = dense
    stock_peak = result["stock_sdpa_default"]["peak_bytes"]

    _, _, frames, height, width = inputs["hidden_states"].shape
    text = int(inputs["encoder_attention_mask"].sum()) if "encoder_attention_mask" in inputs else 0
    heads = model.config.num_attention_heads
    block = 32 if tiny else 128
    geometry = dynamicrad.Geometry(frames=frames, height=height // 2, width=width // 2, heads=heads,
                                   head_dim=model.config.attention_head_dim, text_tokens=text,
                                   text_placement="suffix" if text else "none", block_size=block)
    lut = dynamicrad.lut_entry("high", "static-ratio")
    prior = dict(lut.prior)  # dense_adjacent off: the forced blocks leave room for 90% sparsity

    # A warm-up step of DynamicRad (every layer dense, the defaults: one-pass Q/K norm and rotary,
    # HunyuanVideo's padded prompt tokens dropped rather than masked, dense_backend "auto", which on
    # bf16 CUDA tensors is DynamicRad's own kernel), for the 50-step total.
    dynamicrad.enable(model, warmup_steps=1 << 30, block_size=block)
    warm_mean, _, warm_out, warm_clocks = time_call(model, inputs, repeats)
    dynamicrad.disable(model)
    warm_err = ((warm_out.float() - dense_out.float()).norm() / dense_out.float().norm()).item()
    del warm_out
    result["dynamicrad_warmup_step"] = {"mean_s": warm_mean, "speedup": dense / warm_mean,
                                        "relative_error_vs_stock": warm_err, "clocks": warm_clocks}
    log(f"{tag} DynamicRad warm-up step (all layers dense): {warm_mean:.3f} s, {dense / warm_mean:.2f}x, "
        f"rel. error {warm_err:.1e}; {format_clocks(warm_clocks)}")
    variants = [(t, v) for t, v in variants if model_name in _VARIANT_MODELS.get(v, (model_name,))]
    stock_warm_mean = None
    if any(v == "stock dense" for _, v in variants):  # the warm-up step on the stock attention
        dynamicrad.enable(model, warmup_steps=1 << 30, block_size=block, dense_backend="stock")
        stock_warm_mean, _, stock_warm_out, stock_warm_clocks = time_call(model, inputs, repeats)
        dynamicrad.disable(model)
        stock_warm_err = ((stock_warm_out.float() - dense_out.float()).norm() / dense_out.float().norm()).item()
        del stock_warm_out
        result["dynamicrad_warmup_step_stock_dense"] = {
            "mean_s": stock_warm_mean, "speedup": dense / stock_warm_mean,
            "relative_error_vs_stock": stock_warm_err, "clocks": stock_warm_clocks}
        log(f"{tag} DynamicRad warm-up step with dense_backend='stock': {stock_warm_mean:.3f} s, "
            f"{dense / stock_warm_mean:.2f}x, rel. error {stock_warm_err:.1e}; {format_clocks(stock_warm_clocks)}")
    runs = []
    for target, variant in [(t, "default") for t in sparsities] + list(variants):
        r, achieved = ratio_for(geometry, prior, target, device)
        if achieved < target - 0.01:
            log(f"{tag} target sparsity {target} is out of reach: the prior's forced blocks alone leave "
                f"{achieved:.3f}")
        state = dynamicrad.enable(model, regime="high", mode="static-ratio", warmup_steps=0, prior=prior,
                                  selection={"r_near": r, "r_far": r}, block_size=block, **VARIANTS[variant])
        reset_peak()
        t0 = time.time()
        mean, best, out, clocks = time_call(model, inputs, repeats)
        first_call = time.time() - t0 - mean * repeats
        peak = peak_bytes()
        breakdown = profiled(model, inputs, profile)
        reports = state.report()
        sparse_layers = [x for x in reports if not x.dense]
        layer_sparsity = sum(x.sparsity for x in sparse_layers) / len(sparse_layers)
        fused_pooling = model_name == "hunyuan" and state.config.fused_pooling and device == "cuda"
        select_s, pooling_s = selection_overhead(state, len(sparse_layers), device, fused_pooling)
        overhead = select_s + pooling_s
        engine_bytes = state.device_bytes()
        err = ((out.float() - dense_out.float()).norm() / dense_out.float().norm()).item()
        step_warm = stock_warm_mean if variant == "stock dense" else warm_mean
        entry = {
            "target_sparsity": target, "variant": variant, "ratio": r, "layer_sparsity": layer_sparsity,
            "mean_s": mean, "min_s": best, "speedup": dense / mean, "first_call_s": first_call,
            "selection_s": overhead, "selection_share": overhead / mean,
            "select_s": select_s, "pooling_in_rotary_s": pooling_s,
            "peak_bytes": peak, "engine_device_bytes": engine_bytes,
            "extra_memory_share": (peak + engine_bytes - stock_peak) / stock_peak if stock_peak else 0.0,
            "relative_error_vs_stock": err,
            "breakdown": breakdown, "clocks": clocks,
            # 12 warm-up steps as DynamicRad runs them (measured above), then 38 sparse ones
            "fifty_steps": {
                "stock_s": 50 * dense,
                "dynamicrad_s": 12 * step_warm + 38 * mean,
                "speedup": 50 * dense / (12 * step_warm + 38 * mean),
                "speedup_with_stock_warmup": 50 * dense / (12 * dense + 38 * mean),
            },
        }
        runs.append(entry)
        log(f"{tag} sparsity {layer_sparsity:.3f} (target {target}, "
            f"variant: {variant}): {mean:.3f} s, "
            f"{dense / mean:.2f}x, selection {100 * overhead / mean:.2f}% of the step "
            f"({1e3 * select_s:.0f} ms select + {1e3 * pooling_s:.0f} ms pooling in the Q/K pass), "
            f"memory +{100 * entry['extra_memory_share']:.2f}%, rel. error {err:.3f}; {format_clocks(clocks)}")
        if breakdown:
            log(format_breakdown(f"{tag} DynamicRad at {target}", breakdown))
        dynamicrad.disable(model)
    result["dynamicrad"] = runs
    return result


def print_mode(r: dict, label: str, mode: dict) -> None:
    print(f"\n{r['model']} ({label}) on {r['device']}, latents {r['latents']}, {r['parameters'] / 1e9:.2f} B parameters")
    cudnn = mode["stock_sdpa_cudnn"]
    warm = mode["dynamicrad_warmup_step"]
    stock_dense = mode.get("dynamicrad_warmup_step_stock_dense")
    print(f"  stock SDPA default {mode['stock_sdpa_default']['mean_s']:.3f} s"
          + (f", cuDNN {cudnn['mean_s']:.3f} s" if cudnn else "")
          + f"; DynamicRad warm-up step {warm['mean_s']:.3f} s ({warm['speedup']:.2f}x)"
          + (f", with dense_backend='stock' {stock_dense['mean_s']:.3f} s ({stock_dense['speedup']:.2f}x)"
             if stock_dense else ""))
    print("  target  variant       achieved  step s  speedup  selection  memory  50-step speedup  rel.err"
          "  (50 steps with stock warm-up steps)")
    for x in mode["dynamicrad"]:
        rot = f"{x['variant']:<12}"
        print(f"  {x['target_sparsity']:.2f}    {rot}  {x['layer_sparsity']:.3f}     {x['mean_s']:6.3f}  {x['speedup']:6.2f}x"
              f"   {100 * x['selection_share']:6.2f}%  {100 * x['extra_memory_share']:+5.2f}%"
              f"   {x['fifty_steps']['speedup']:6.2f}x        {x['relative_error_vs_stock']:.3f}"
              f"    {x['fifty_steps']['speedup_with_stock_warmup']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["wan", "hunyuan", "both"], default="both")
    parser.add_argument("--sparsities", default="0.80,0.85,0.90")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after one warm-up")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a smoke test of this script")
    parser.add_argument("--stock-rotary-at", type=float, help="also time this sparsity with the stock Q/K "
                        "arithmetic (fused_rotary=False) and, for Wan, with the one-pass rotary after the stock "
                        "norm (fused_norm=False), to separate the gains")
    parser.add_argument("--unfused-pooling-at", type=float, help="HunyuanVideo: also time this sparsity with "
                        "fused_pooling=False (selection pools Q and K itself)")
    parser.add_argument("--stock-dense-at", type=float, help="also time the warm-up step and this sparsity with "
                        "dense_backend='stock' (dense layers and warm-up steps on the stock attention, where the "
                        "default 'auto' runs DynamicRad's kernels on the GPU); its 50-step total uses that "
                        "warm-up step")
    parser.add_argument("--all-sparse-at", type=float, help="also time this sparsity with dense_layers=0 (no dense "
                        "layer; the reference default, used otherwise, keeps the first layer dense)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu only with --tiny")
    parser.add_argument("--layers", type=int, help="keep this many blocks of each kind: a quick check of "
                        "memory and errors at full width and length (the step times are not the model's)")
    parser.add_argument("--compile", choices=["none", "regional", "both"], default="none",
                        help="regional: time after compile_repeated_blocks(fullgraph=True); both: eager, then "
                             "compiled, on the same model")
    parser.add_argument("--profile", action="store_true", help="also profile one call of each (torch.profiler) "
                        "and report GPU time by kind of kernel: attention, selection, GEMM, the rest")
    args = parser.parse_args()
    try:
        sparsities = [float(s) for s in args.sparsities.split(",")]
    except ValueError:
        parser.error(f"--sparsities {args.sparsities!r}: expected comma-separated numbers in (0, 1)")
    if any(not 0.0 < s < 1.0 for s in sparsities):
        parser.error(f"--sparsities {args.sparsities!r}: every value must be in (0, 1)")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.layers is not None and args.layers < 2:
        parser.error("--layers must be >= 2 (the first layer stays dense)")
    if args.device == "cpu" and not args.tiny:
        parser.error("--device cpu needs --tiny (the full-size models are for the GPU)")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_step: needs a CUDA GPU (or --tiny --device cpu)", file=sys.stderr)
        return 1
    models = ["wan", "hunyuan"] if args.model == "both" else [args.model]
    if args.profile and args.device != "cuda":
        parser.error("--profile needs --device cuda (it sums GPU kernel times)")
    variants = []
    for value, names in ((args.stock_rotary_at, ("rotary", "stock")), (args.unfused_pooling_at, ("unfused pool",)),
                         (args.stock_dense_at, ("stock dense",)), (args.all_sparse_at, ("all sparse",))):
        if value is not None:
            if not 0.0 < value < 1.0:
                parser.error(f"a sparsity of {value}: must be in (0, 1)")
            variants += [(value, name) for name in names]
    results = [run(m, sparsities, args.repeats, args.tiny, args.device, args.compile, args.profile, args.layers,
                   variants) for m in models]
    for r in results:
        for label, mode in r["modes"].items():
            print_mode(r, label, mode)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
