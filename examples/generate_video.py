r"""Generate a video with a diffusers pipeline from a local model folder, DynamicRad enabled.

    python examples/generate_video.py --model-dir ~/models/Wan2.1-T2V-14B-Diffusers \
        --prompt "A red fox runs through fresh snow, tracking shot" --regime high --out fox.mp4

Works with the folders of WanPipeline (Wan2.1 / Wan2.2 text-to-video), WanImageToVideoPipeline
(pass --image) and HunyuanVideoPipeline. Users bring their own weights: the folder is opened with
local_files_only=True, so nothing is downloaded. --dense runs the stock pipeline for comparison.
Needs a CUDA GPU; the options are checked before the model loads.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and every option's default in its help."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    p.add_argument("--model-dir", required=True, type=Path, help="a diffusers model folder (model_index.json)")
    p.add_argument("--prompt", required=True, help="what the video shows")
    p.add_argument("--negative-prompt", default="", help="what it should not show (Wan only)")
    p.add_argument("--image", type=Path, help="first frame for image-to-video pipelines")
    p.add_argument("--height", type=int, default=720, help="pixels")
    p.add_argument("--width", type=int, default=1280, help="pixels")
    p.add_argument("--frames", type=int, default=81, help="video frames")
    p.add_argument("--steps", type=int, default=50, help="denoising steps")
    p.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (Wan)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--regime", default="mid", choices=["low", "mid", "high"], help="motion regime (LUT row)")
    p.add_argument("--mode", choices=["static-ratio", "dynamic-threshold"], help="default: the regime's LUT default")
    p.add_argument("--warmup-steps", type=int, default=12, help="dense steps at the start")
    p.add_argument("--dense-layers", type=int, default=1, help="dense self-attention layers, from the first")
    p.add_argument("--dense-padding", default="drop", choices=["drop", "mask"],
                   help="HunyuanVideo's dense layers and warm-up steps: leave the padded prompt tokens out "
                        "(drop, faster) or make the stock masked call (mask, the stock bits)")
    p.add_argument("--dense-backend", default="auto", choices=["auto", "stock", "dynamicrad"],
                   help="what runs the dense layers and warm-up steps: the stock attention (its bits) or "
                        "DynamicRad's own kernel over every block (about 3%% faster warm-up steps on an H100); "
                        "auto: DynamicRad's kernel on a GPU in bf16 / fp16, the stock attention otherwise")
    p.add_argument("--refresh-interval", type=int, default=1, help="rebuild layouts every this many steps")
    p.add_argument("--token-order", default="raster", choices=["raster", "tiled3d"], help="token order of the layouts")
    p.add_argument("--lut", type=Path, help="a LUT JSON file (default: the built-in table)")
    p.add_argument("--dense", action="store_true", help="run the stock pipeline (no DynamicRad)")
    p.add_argument("--compile", action="store_true",
                   help="compile the transformer blocks (diffusers' compile_repeated_blocks, fullgraph)")
    p.add_argument("--out", type=Path, default=Path("video.mp4"), help="the video file (PNG frames without a writer)")
    return p.parse_args()


def save(frames, path: Path, fps: int) -> Path:
    from diffusers.utils import export_to_video

    try:
        export_to_video(frames, str(path), fps=fps)
        return path
    except (ImportError, RuntimeError, OSError) as e:  # no video writer: keep the frames as PNGs
        folder = path.with_suffix("")
        folder.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        for i, frame in enumerate(frames):
            image = frame if isinstance(frame, Image.Image) else Image.fromarray((frame * 255).round().astype("uint8"))
            image.save(folder / f"{i:04d}.png")
        print(f"could not write {path} ({e}); wrote the frames to {folder}/", file=sys.stderr)
        return folder


def usage_error(message: str) -> int:
    print(f"generate_video.py: {message}", file=sys.stderr)
    return 2


def main() -> int:
    args = parse_args()
    if not (args.model_dir / "model_index.json").exists():
        return usage_error(f"--model-dir {args.model_dir}: no model_index.json (expected a diffusers model folder)")
    if args.image is not None and not args.image.is_file():
        return usage_error(f"--image {args.image}: no such file")
    import dynamicrad

    config = None
    if not args.dense:  # the options are checked now, not after the model has loaded
        try:
            config = dynamicrad.DynamicRadConfig(
                regime=args.regime, mode=args.mode, lut=None if args.lut is None else str(args.lut),
                warmup_steps=args.warmup_steps, dense_layers=args.dense_layers, dense_padding=args.dense_padding,
                dense_backend=args.dense_backend, refresh_interval=args.refresh_interval, token_order=args.token_order,
            )
        except (ValueError, TypeError) as e:
            return usage_error(str(e))
    if not torch.cuda.is_available():
        return usage_error("no CUDA GPU: the pipelines at these sizes need one")
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(args.model_dir, torch_dtype=torch.bfloat16, local_files_only=True)
    pipe.to("cuda")
    state = None if config is None else dynamicrad.enable(pipe, config)
    if args.compile:  # after enable(): one graph per block class serves every layer and step
        for name in ("transformer", "transformer_2"):
            model = getattr(pipe, name, None)
            if model is not None:
                model.compile_repeated_blocks(fullgraph=True)
    call = dict(prompt=args.prompt, height=args.height, width=args.width, num_frames=args.frames,
                num_inference_steps=args.steps, generator=torch.Generator("cuda").manual_seed(args.seed))
    if "hunyuan" not in type(pipe).__name__.lower():
        call.update(negative_prompt=args.negative_prompt, guidance_scale=args.guidance)
    if args.image is not None:
        from diffusers.utils import load_image

        call["image"] = load_image(str(args.image))
    start = time.time()
    frames = pipe(**call).frames[0]
    seconds = time.time() - start
    where = save(frames, args.out, fps=24 if "hunyuan" in type(pipe).__name__.lower() else 16)
    print(f"{type(pipe).__name__}: {args.steps} steps in {seconds:.1f} s -> {where}")
    if state is not None:
        print(state.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
