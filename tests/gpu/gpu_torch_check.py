"""GPU check of the Python layer (not collected by pytest: CI has no GPU). Run on a GPU machine via
scripts/device/gpu_step.sh. Exits 1 when a check fails.

  1. The CUDA engine against the CPU engine on the same bf16 inputs: identical layouts, outputs
     within bf16 tolerance, for both modes, batch 1 and 2, block 128 and 64, a text suffix.
  2. The torch operator on CUDA under torch.compile(fullgraph=True) equals eager.
  3. The one-pass rotary embedding on CUDA: the stock processor's bits; with the Q/K norm (Wan's
     over all heads, HunyuanVideo's over each head with text tokens left unrotated), the CPU's bits
     and the stock norm's values within rounding, on every kernel path (heads in registers or re-read,
     16-byte / 8-byte / pair vectors, an unaligned start).
  4. A small Wan transformer in bf16 on the GPU: DynamicRad at density 1 against the stock processor.
  5. The same transformer compiled by inductor (compile_repeated_blocks(fullgraph=True)) over dense
     warm-up and sparse steps: eager's outputs within bf16 rounding, one graph for every step.
  6. Pooling in the Q/K pass (norm_rotary_pooled): the CPU's bits for the output and the block means
     on every path (HunyuanVideo's pooling kernel, the others pooling afterwards); selection from
     those means gives the layouts of selection pooling Q and K itself, on CUDA and on the CPU; a
     small HunyuanVideo transformer gives the same bits with fused_pooling on and off.
  7. Dense attention on DynamicRad's kernels (dense_backend="dynamicrad", and "auto", the default, on
     bf16 CUDA tensors): the CUDA engine against the CPU engine and torch SDPA (both kernels: block 128
     wgmma, block 64 mma.sync), and the small Wan / HunyuanVideo transformers' dense steps against
     stock.
  8. With two GPUs: a small Wan transformer on cuda:1 while cuda:0 is current gives cuda:0's output
     and sparsity, leaves cuda:0 current, and disable() frees its engines' memory on cuda:1.
"""

from __future__ import annotations

import sys

import torch

import dynamicrad

failures = []


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def engine_vs_cpu() -> None:
    cases = [
        (dynamicrad.Geometry(frames=6, height=13, width=20, heads=4, head_dim=128), 1),
        (dynamicrad.Geometry(frames=5, height=9, width=15, heads=3, head_dim=64, block_size=64), 2),
        (dynamicrad.Geometry(frames=4, height=16, width=16, heads=2, head_dim=128, text_tokens=77,
                             text_placement="suffix"), 2),
        (dynamicrad.Geometry(frames=8, height=12, width=16, heads=2, head_dim=128, token_order="tiled3d"), 1),
    ]
    selections = [dynamicrad.Selection("static-ratio", r_near=0.4, r_far=0.2),
                  dynamicrad.Selection("dynamic-threshold", tau_near=0.004, tau_far=0.008)]
    gen = torch.Generator().manual_seed(0)
    for geometry, batch in cases:
        prior = {"gamma": 0.5}
        cpu = dynamicrad.Engine(geometry, prior=prior, device="cpu")
        gpu = dynamicrad.Engine(geometry, prior=prior, device="cuda")
        shape = (batch, geometry.tokens, geometry.heads, geometry.head_dim)
        q, k, v = (torch.randn(shape, generator=gen).to(torch.bfloat16) for _ in range(3))
        for sel in selections:
            out_c, lse_c = dynamicrad.sparse_attention(q, k, v, cpu, sel)
            out_g, lse_g = dynamicrad.sparse_attention(q.cuda(), k.cuda(), v.cuda(), gpu, sel)
            (oc, cc), (og, cg) = cpu.layout(0), gpu.layout(0)
            name = f"{geometry.frames}x{geometry.height}x{geometry.width}+{geometry.text_tokens} " \
                   f"block {geometry.block_size} batch {batch} {sel.mode}"
            check(torch.equal(oc, og) and torch.equal(cc, cg), f"layout cuda == cpu: {name}")
            e = rel(out_g.cpu(), out_c)
            check(e < 1e-2, f"output cuda vs cpu rel {e:.2e}: {name}")
            d = (lse_g.cpu() - lse_c).abs().max().item()
            check(d < 1e-2, f"lse cuda vs cpu max diff {d:.2e}: {name}")


def compiled_op() -> None:
    geometry = dynamicrad.Geometry(frames=4, height=16, width=16, heads=2, head_dim=128)
    engine = dynamicrad.Engine(geometry, device="cuda")
    sel = dynamicrad.Selection("static-ratio", r_near=0.5, r_far=0.25)
    q, k, v = (torch.randn(1, geometry.tokens, 2, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))

    def f(q, k, v):
        out, _ = dynamicrad.sparse_attention(q * 1.0, k, v, engine, sel)
        return out.float().sum(-1)

    eager = f(q, k, v)
    compiled = torch.compile(f, fullgraph=True)(q, k, v)
    check(torch.allclose(eager, compiled, rtol=1e-3, atol=1e-3), "torch.compile(fullgraph=True) on CUDA == eager")


def rotary_bits() -> None:
    from dynamicrad.integrations.wan import _rotate

    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        x = (torch.randn(2, 1031, 5, 128, device="cuda") * 3).to(dtype)
        cos, sin = torch.randn(1, 1031, 1, 128, device="cuda"), torch.randn(1, 1031, 1, 128, device="cuda")
        check(torch.equal(dynamicrad.rotary(x, cos, sin), _rotate(x, cos, sin)),
              f"rotary on CUDA is bit-identical to the stock arithmetic ({dtype})")
    # 16-byte vectors (head_dim 128), pairs (head_dim 6), and a row offset that breaks 16-byte alignment
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for shape, offset in (((2, 1031, 5, 128), 0), ((1, 77, 3, 6), 0), ((1, 33, 2, 128), 2)):
            b, n, h, d = shape
            flat = (torch.randn(b * n * h * d + offset, device="cuda") * 3).to(dtype)
            x = flat[offset:].view(shape)
            weight = (1 + 0.3 * torch.randn(h * d, device="cuda")).to(dtype)
            cos, sin = torch.randn(1, n, 1, d, device="cuda"), torch.randn(1, n, 1, d, device="cuda")
            out = dynamicrad.rotary(x, cos, sin)
            check(torch.equal(out.cpu(), dynamicrad.rotary(x.cpu(), cos.cpu(), sin.cpu())),
                  f"rotary {shape} +{offset} ({dtype}): CUDA == CPU bits")
            out = dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin)
            cpu = dynamicrad.norm_rotary(x.cpu(), weight.cpu(), 1e-6, cos.cpu(), sin.cpu())
            check(torch.equal(out.cpu(), cpu), f"norm_rotary {shape} +{offset} ({dtype}): CUDA == CPU bits")
            stock = _rotate(torch.nn.functional.rms_norm(x.flatten(2), (h * d,), weight, 1e-6).unflatten(2, (h, d)),
                            cos, sin)
            check(rel(out, stock) < (2e-3 if dtype != torch.float32 else 1e-6),
                  f"norm_rotary {shape} +{offset} ({dtype}) vs the stock norm and rotary: rel {rel(out, stock):.1e}")


def hunyuan_rotary_bits() -> None:
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.normalization import RMSNorm

    # head_dim 128: one 4-value vector a lane; 6: pairs; 1040: the head re-read (over 32 x 4 x 8
    # values); an offset of 2 elements breaks the vector alignment.
    cases = (((2, 1031, 5, 128), 1000, 0), ((1, 77, 3, 6), 70, 0), ((1, 9, 2, 1040), 5, 0), ((1, 33, 2, 128), 33, 2))
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for shape, video, offset in cases:
            b, n, h, d = shape
            flat = (torch.randn(b * n * h * d + offset, device="cuda") * 3).to(dtype)
            x = flat[offset:].view(shape)
            weight = (1 + 0.3 * torch.randn(d, device="cuda")).to(dtype)
            cos, sin = torch.randn(video, d, device="cuda"), torch.randn(video, d, device="cuda")
            out = dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin, "hunyuan_video", video)
            cpu = dynamicrad.norm_rotary(x.cpu(), weight.cpu(), 1e-6, cos.cpu(), sin.cpu(), "hunyuan_video", video)
            name = f"norm_rotary hunyuan_video {shape} video {video} +{offset} ({dtype})"
            check(torch.equal(out.cpu(), cpu), f"{name}: CUDA == CPU bits")
            norm = RMSNorm(d, eps=1e-6).to("cuda", dtype)
            with torch.no_grad():
                norm.weight.copy_(weight)
                normed = norm(x)
            stock = torch.cat([apply_rotary_emb(normed[:, :video], (cos, sin), sequence_dim=1), normed[:, video:]], 1)
            e = rel(out, stock)
            check(e < (2e-3 if dtype != torch.float32 else 1e-6), f"{name} vs the stock norm and rotary: rel {e:.1e}")
    # No token rotated: empty tables (null data) are never read; the norm alone, the CPU's bits.
    x = (torch.randn(1, 50, 3, 128, device="cuda") * 3).to(torch.bfloat16)
    weight = (1 + 0.3 * torch.randn(128, device="cuda")).to(torch.bfloat16)
    empty = torch.empty(0, 128, device="cuda")
    out = dynamicrad.norm_rotary(x, weight, 1e-6, empty, empty, "hunyuan_video", 0)
    cpu = dynamicrad.norm_rotary(x.cpu(), weight.cpu(), 1e-6, empty.cpu(), empty.cpu(), "hunyuan_video", 0)
    check(torch.equal(out.cpu(), cpu), "norm_rotary hunyuan_video, no token rotated (empty tables): CUDA == CPU bits")
    # Wan's norm over a long row (70 x 128 values)
    x = (torch.randn(1, 40, 70, 128, device="cuda") * 3).to(torch.bfloat16)
    weight = (1 + 0.3 * torch.randn(70 * 128, device="cuda")).to(torch.bfloat16)
    cos, sin = torch.randn(1, 40, 1, 128, device="cuda"), torch.randn(1, 40, 1, 128, device="cuda")
    out = dynamicrad.norm_rotary(x, weight, 1e-6, cos, sin)
    check(torch.equal(out.cpu(), dynamicrad.norm_rotary(x.cpu(), weight.cpu(), 1e-6, cos.cpu(), sin.cpu())),
          "norm_rotary wan, a long row (70 x 128 values): CUDA == CPU bits")


def pooled_bits() -> None:
    # (shape, rotated tokens, pool block, pooled blocks, offset, style): head_dim 128 and 64 take
    # HunyuanVideo's pooling kernel (a short last block at 300 tokens; fewer blocks than the tensor
    # holds at 1031); head_dim 6, an unaligned start and Wan's norm pool afterwards.
    cases = (((2, 1031, 5, 128), 1000, 128, 7, 0, "hunyuan_video"),
             ((1, 300, 24, 128), 300, 128, 3, 0, "hunyuan_video"),
             ((2, 200, 3, 64), 150, 64, 2, 0, "hunyuan_video"),
             ((1, 77, 3, 6), 70, 32, 3, 0, "hunyuan_video"),
             ((1, 33, 2, 128), 33, 8, 5, 2, "hunyuan_video"),
             ((2, 300, 5, 128), 300, 128, 3, 0, "wan"))
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for shape, video, block, blocks, offset, style in cases:
            b, n, h, d = shape
            flat = (torch.randn(b * n * h * d + offset, device="cuda") * 3).to(dtype)
            x = flat[offset:].view(shape)
            hunyuan = style == "hunyuan_video"
            weight = (1 + 0.3 * torch.randn(d if hunyuan else h * d, device="cuda")).to(dtype)
            if hunyuan:
                cos, sin = torch.randn(video, d, device="cuda"), torch.randn(video, d, device="cuda")
                args = (1e-6, cos, sin, style, video)
            else:
                cos, sin = torch.randn(1, n, 1, d, device="cuda"), torch.randn(1, n, 1, d, device="cuda")
                args = (1e-6, cos, sin, style, -1)
            out, pooled = dynamicrad.norm_rotary_pooled(x, weight, *args, block, blocks)
            plain = dynamicrad.norm_rotary(x, weight, *args)
            cpu_args = tuple(a.cpu() if torch.is_tensor(a) else a for a in args)
            out_c, pooled_c = dynamicrad.norm_rotary_pooled(x.cpu(), weight.cpu(), *cpu_args, block, blocks)
            name = f"norm_rotary_pooled {style} {shape} block {block} x {blocks} +{offset} ({dtype})"
            check(torch.equal(out, plain), f"{name}: the output is norm_rotary's")
            check(torch.equal(out.cpu(), out_c) and torch.equal(pooled.cpu(), pooled_c), f"{name}: CUDA == CPU bits")
    # Selection from those means: the layouts of selection pooling Q and K itself (text suffix: the
    # pooled blocks are the video tokens' whole blocks).
    geometry = dynamicrad.Geometry(frames=4, height=16, width=20, heads=3, head_dim=128, text_tokens=77,
                                   text_placement="suffix")
    video = 4 * 16 * 20
    selections = [dynamicrad.Selection("static-ratio", r_near=0.4, r_far=0.2),
                  dynamicrad.Selection("dynamic-threshold", tau_near=0.004, tau_far=0.008)]
    for batch in (1, 2):
        x = [torch.randn(batch, geometry.tokens, 3, 128, device="cuda").to(torch.bfloat16) for _ in range(2)]
        weight = (1 + 0.3 * torch.randn(128, device="cuda")).to(torch.bfloat16)
        cos, sin = torch.randn(video, 128, device="cuda"), torch.randn(video, 128, device="cuda")
        (q, pq), (k, pk) = (dynamicrad.norm_rotary_pooled(t, weight, 1e-6, cos, sin, "hunyuan_video", video, 128,
                                                          video // 128) for t in x)
        for device in ("cuda", "cpu"):
            engine = dynamicrad.Engine(geometry, prior={"gamma": 0.5}, device=device)
            on = [t.to(device) for t in (q, k, pq, pk)]
            for sel in selections:
                engine.select(on[0], on[1], sel, 0)
                plain = engine.layout(0)
                engine.select(on[0], on[1], sel, 0, pooled=(on[2], on[3]), pool_block=geometry.block_size)
                fused = engine.layout(0)
                check(all(torch.equal(a, b) for a, b in zip(plain, fused)),
                      f"select from pooled means == select on {device}: batch {batch} {sel.mode}")
            engine.close()


def dense_on_engine() -> None:
    cases = [
        (dynamicrad.Geometry(frames=6, height=13, width=20, heads=4, head_dim=128), 1),
        (dynamicrad.Geometry(frames=4, height=16, width=16, heads=2, head_dim=128, text_tokens=77,
                             text_placement="suffix"), 2),
        (dynamicrad.Geometry(frames=5, height=9, width=15, heads=3, head_dim=64, block_size=64), 2),
    ]
    gen = torch.Generator().manual_seed(3)
    for geometry, batch in cases:
        cpu = dynamicrad.Engine(geometry, device="cpu")
        gpu = dynamicrad.Engine(geometry, device="cuda")
        shape = (batch, geometry.tokens, geometry.heads, geometry.head_dim)
        q, k, v = (torch.randn(shape, generator=gen).to(torch.bfloat16) for _ in range(3))
        out_c, lse_c = dynamicrad.dense_attention(q, k, v, cpu)
        out_g, lse_g = dynamicrad.dense_attention(q.cuda(), k.cuda(), v.cuda(), gpu)
        sdpa = torch.nn.functional.scaled_dot_product_attention(
            *(t.cuda().float().transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
        name = f"{geometry.tokens} tokens block {geometry.block_size} head_dim {geometry.head_dim} batch {batch}"
        e, s = rel(out_g.cpu(), out_c), rel(out_g, sdpa)
        d = (lse_g.cpu() - lse_c).abs().max().item()
        check(e < 1e-2 and s < 1e-2 and d < 1e-2,
              f"dense_attention on CUDA vs the CPU engine rel {e:.2e}, vs SDPA (float) rel {s:.2e}, lse {d:.1e}: {name}")
        cpu.close()
        gpu.close()


def small_wan(heads: int, channels: int, text_dim: int, layers: int, device: str = "cuda"):
    """A random bf16 Wan transformer on the GPU with head_dim 128 (seed 0)."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=128, in_channels=channels,
        out_channels=channels, text_dim=text_dim, freq_dim=32, ffn_dim=256, num_layers=layers, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
    ).to(device, torch.bfloat16).eval()


def wan_density_one() -> None:
    model = small_wan(heads=2, channels=4, text_dim=32, layers=2)
    inputs = dict(hidden_states=torch.randn(2, 4, 5, 32, 32, device="cuda", dtype=torch.bfloat16),
                  timestep=torch.tensor([500.0, 500.0], device="cuda"),
                  encoder_hidden_states=torch.randn(2, 8, 32, device="cuda", dtype=torch.bfloat16))
    with torch.no_grad():
        stock = model(**inputs).sample
        state = dynamicrad.enable(model, warmup_steps=0, dense_layers=0,
                                  prior={"gamma": 16.0, "theta_m": 0.0, "theta_c": 0.0},
                                  selection={"r_near": 1.0, "r_far": 1.0})
        ours = model(**inputs).sample
        check(all(r.sparsity == 0.0 for r in state.report()), "Wan bf16 on CUDA: density 1 keeps every block")
        e = rel(ours, stock)
        check(e < 3e-2, f"Wan bf16 on CUDA: density 1 vs stock rel {e:.2e}")
        dynamicrad.disable(model)
        check(torch.equal(model(**inputs).sample, stock), "Wan on CUDA: disable() restores stock exactly")
        dynamicrad.enable(model, dense_backend="dynamicrad")
        own = model(**inputs).sample
        e = rel(own, stock)
        check(e < 3e-2, f"Wan bf16 on CUDA: a warm-up step on DynamicRad's dense kernel vs stock rel {e:.2e}")
        dynamicrad.disable(model)
        dynamicrad.enable(model)
        check(torch.equal(model(**inputs).sample, own),
              "Wan bf16 on CUDA: the default dense_backend ('auto') runs the warm-up step on DynamicRad's dense kernel")
        dynamicrad.disable(model)
        dynamicrad.enable(model, dense_backend="stock", fused_norm=False)
        check(torch.equal(model(**inputs).sample, stock),
              "Wan bf16 on CUDA: dense_backend='stock' with the stock norm gives the stock bits in a warm-up step")
        dynamicrad.disable(model)


def wan_compiled_steps() -> None:
    from torch._dynamo.utils import counters

    model = small_wan(heads=4, channels=16, text_dim=64, layers=4)
    g = torch.Generator(device="cuda").manual_seed(1)
    inputs = dict(hidden_states=torch.randn(2, 16, 6, 32, 48, device="cuda", dtype=torch.bfloat16, generator=g),
                  encoder_hidden_states=torch.randn(2, 16, 64, device="cuda", dtype=torch.bfloat16, generator=g))
    timesteps = (900.0, 800.0, 700.0, 600.0)
    state = dynamicrad.enable(model, warmup_steps=2, regime="high")

    def steps():
        outs = []
        with torch.no_grad():
            for t in timesteps:
                outs.append(model(**inputs, timestep=torch.full((2,), t, device="cuda")).sample)
        return outs

    eager = steps()
    sparsity = state.mean_sparsity()
    state.reset()
    torch._dynamo.reset()
    counters.clear()
    model.compile_repeated_blocks(fullgraph=True)
    compiled = steps()
    graphs = counters["stats"]["unique_graphs"]
    errors = [rel(a, b) for a, b in zip(compiled, eager)]
    check(max(errors) < 3e-2, f"Wan compiled (inductor) vs eager over 2 dense + 2 sparse steps: rel {max(errors):.2e}")
    check(graphs == 1, f"Wan compiled: one graph for all blocks and steps (got {graphs})")
    check(abs(state.mean_sparsity() - sparsity) < 1e-9 and sparsity > 0.05,
          f"Wan compiled: the eager layouts' sparsity ({state.mean_sparsity():.3f} vs {sparsity:.3f})")
    torch._dynamo.reset()
    dynamicrad.disable(model)


def hunyuan_padded_prompts() -> None:
    """A random bf16 HunyuanVideo transformer on the GPU (head_dim 128), two prompts padded to 16
    tokens: warm-up steps with the padded tokens dropped (the default) stay within bf16 rounding of
    the stock masked call, "mask" with the stock Q/K norm gives the stock bits, a sparse step runs,
    and disable() restores stock exactly."""
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(0)
    model = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=128, num_layers=2,
        num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1,
        text_embed_dim=32, pooled_projection_dim=8, rope_axes_dim=(16, 56, 56),
    ).to("cuda", torch.bfloat16).eval()
    g = torch.Generator(device="cuda").manual_seed(2)
    mask = torch.zeros(2, 16, dtype=torch.long, device="cuda")
    mask[0, :16] = 1
    mask[1, :9] = 1
    inputs = dict(hidden_states=torch.randn(2, 4, 5, 32, 32, device="cuda", dtype=torch.bfloat16, generator=g),
                  encoder_hidden_states=torch.randn(2, 16, 32, device="cuda", dtype=torch.bfloat16, generator=g),
                  encoder_attention_mask=mask,
                  pooled_projections=torch.randn(2, 8, device="cuda", dtype=torch.bfloat16, generator=g),
                  guidance=torch.full((2,), 6000.0, device="cuda"))

    def call(t: float):
        with torch.no_grad():
            return model(**inputs, timestep=torch.full((2,), t, device="cuda")).sample

    stock = call(900.0)
    dynamicrad.enable(model, warmup_steps=1, dense_padding="mask", fused_norm=False)
    check(torch.equal(call(900.0), stock), "HunyuanVideo on CUDA: warm-up with dense_padding='mask' gives the stock bits")
    dynamicrad.disable(model)
    dynamicrad.enable(model, warmup_steps=1, dense_backend="dynamicrad")
    e = rel(call(900.0), stock)
    check(e < 3e-2, f"HunyuanVideo on CUDA: warm-up on DynamicRad's dense kernel vs the masked stock call: rel {e:.2e}")
    dynamicrad.disable(model)
    state = dynamicrad.enable(model, warmup_steps=1, regime="high")
    warm = call(900.0)
    e = rel(warm, stock)
    check(e < 3e-2, f"HunyuanVideo on CUDA: warm-up with the padded tokens dropped vs the masked stock call: rel {e:.2e}")
    sparse = call(800.0)
    sparsity = state.mean_sparsity()
    check(bool(torch.isfinite(sparse).all()) and sparsity > 0.05,
          f"HunyuanVideo on CUDA: a sparse step with padded prompts runs (sparsity {sparsity:.3f})")
    dynamicrad.disable(model)
    state = dynamicrad.enable(model, warmup_steps=1, regime="high", fused_pooling=False)
    call(900.0)
    check(torch.equal(call(800.0), sparse) and state.mean_sparsity() == sparsity,
          "HunyuanVideo on CUDA: fused_pooling=False (selection pools Q and K) gives the same bits")
    dynamicrad.disable(model)
    check(torch.equal(call(900.0), stock), "HunyuanVideo on CUDA: disable() restores stock exactly")


def second_device() -> None:
    """A small Wan transformer on cuda:1 while cuda:0 is current: the output and sparsity of the same
    model on cuda:0, cuda:0 stays current, and disable() returns every byte the engines took on cuda:1."""
    import gc

    if torch.cuda.device_count() < 2:
        print("skip  second device: one CUDA device", flush=True)
        return
    torch.cuda.set_device(0)
    results = {}
    for device, rounds in (("cuda:0", 1), ("cuda:1", 2)):  # cuda:1's first round also loads its kernels
        model = small_wan(heads=4, channels=16, text_dim=64, layers=2, device=device)
        g = torch.Generator().manual_seed(1)
        inputs = dict(hidden_states=torch.randn(2, 16, 6, 32, 48, generator=g).to(device, torch.bfloat16),
                      encoder_hidden_states=torch.randn(2, 16, 64, generator=g).to(device, torch.bfloat16),
                      timestep=torch.full((2,), 800.0, device=device))
        for _ in range(rounds):
            gc.collect()
            torch.cuda.synchronize(device)
            with torch.cuda.device(device):
                torch.cuda.empty_cache()
            free_before = torch.cuda.mem_get_info(device)[0]
            state = dynamicrad.enable(model, warmup_steps=0, regime="high")
            with torch.no_grad():
                out = model(**inputs).sample
            results[device] = (out.cpu(), state.mean_sparsity(), state.device_bytes())
            dynamicrad.disable(model)
            del state, out
            gc.collect()
            torch.cuda.synchronize(device)
            with torch.cuda.device(device):
                torch.cuda.empty_cache()
            free_after = torch.cuda.mem_get_info(device)[0]
        check(torch.cuda.current_device() == 0, f"{device}: cuda:0 stays the current device")
        if device == "cuda:1":
            check(free_after == free_before,
                  f"cuda:1 with cuda:0 current: disable() frees the engines' memory ({free_before - free_after} bytes left)")
        del model, inputs
    (out0, sparsity0, bytes0), (out1, sparsity1, bytes1) = results["cuda:0"], results["cuda:1"]
    e = rel(out1, out0)
    check(e < 1e-3 and sparsity1 == sparsity0 and sparsity0 > 0.05,
          f"Wan on cuda:1 with cuda:0 current vs on cuda:0: rel {e:.2e} (bits equal: {torch.equal(out0, out1)}), "
          f"sparsity {sparsity1:.3f} vs {sparsity0:.3f}")
    check(bytes1 == bytes0 and bytes0 > 0, f"engine device bytes on cuda:1 {bytes1}, on cuda:0 {bytes0}")


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_torch_check: needs a CUDA GPU", file=sys.stderr)
        return 1
    engine_vs_cpu()
    compiled_op()
    rotary_bits()
    hunyuan_rotary_bits()
    pooled_bits()
    dense_on_engine()
    wan_density_one()
    wan_compiled_steps()
    hunyuan_padded_prompts()
    second_device()
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
