"""DynamicRadState: everything DynamicRad keeps for one enabled pipeline, in one object the user
holds (``enable()`` returns it; it is also ``transformer.dynamicrad_state``). No globals: two
pipelines have two states."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from . import _library as _lib
from .config import CUDA_BLOCK_SIZES, DynamicRadConfig
from .engine import Engine, Geometry, Selection, lut_entry
from .ops import dense_attention, sparse_attention

# Head sizes the CUDA engine takes (src/cuda/cuda_engine.cu).
_CUDA_HEAD_DIMS = (64, 128)

# Transformer calls per denoising step that keep their own layouts when layouts are reused
# (classifier-free guidance runs the conditional and unconditional branches as two calls).
CALLS_PER_STEP = 2


@dataclass(frozen=True)
class VideoShape:
    """Latent video tokens of the current transformer call (after patching)."""

    frames: int
    height: int
    width: int

    @property
    def tokens(self) -> int:
        return self.frames * self.height * self.width


@dataclass
class LayerReport:
    """What one self-attention layer did in the last step it ran (all of that step's calls).
    Layers are numbered across the pipeline's transformers (Wan2.2's second one follows the first)."""

    layer: int
    step: int
    dense: bool
    kept: int = 0
    total: int = 0

    @property
    def sparsity(self) -> float:
        return 0.0 if self.dense or self.total == 0 else 1.0 - self.kept / self.total


class DynamicRadState:
    """Per-pipeline state: options, the denoising step, engines (one per geometry and device),
    per-layer layout records, and what ``disable()`` needs to restore the stock model."""

    def __init__(self, config: DynamicRadConfig, family: str, num_layers: int):
        self.config = config
        self.family = family
        self.num_layers = num_layers
        self.step = 0
        self.call_in_step = 0
        self.video: Optional[VideoShape] = None
        self.text_lengths: Optional[list] = None
        self._last_timestep: Optional[float] = None
        self._engines: dict = {}
        self._selections: dict = {}
        self._records: dict = {}
        self._records_step: dict = {}
        self._layouts: dict = {}
        self._permutations: dict = {}
        self._restore: list = []

    # ---- denoising steps -------------------------------------------------------------------
    def reset(self) -> None:
        """Starts counting steps again (a new generation is also detected by a rising timestep)."""
        self.step = 0
        self.call_in_step = 0
        self._last_timestep = None

    def begin_call(self, timestep: torch.Tensor, video: VideoShape, text_lengths: Optional[list] = None) -> None:
        """Called at transformer entry: advances the step when the timestep falls, starts over when
        it rises (a new generation), counts calls within a step (guidance branches)."""
        t = float(timestep.detach().float().max()) if torch.is_tensor(timestep) else float(timestep)
        if self._last_timestep is None or t > self._last_timestep:
            self.step, self.call_in_step = 0, 0
        elif t < self._last_timestep:
            self.step, self.call_in_step = self.step + 1, 0
        else:
            self.call_in_step += 1
        self._last_timestep = t
        self.video = video
        self.text_lengths = text_lengths

    def end_call(self) -> None:
        """Called when a transformer call returns (or raises): no call is running."""
        self.video = None
        self.text_lengths = None

    def check_device(self, device: torch.device, head_dim: int) -> None:
        """At transformer entry: what the first sparse step on this device would refuse, refused now
        (not after the warm-up steps). ValueError / RuntimeError naming the option."""
        if device.type != "cuda":
            return
        if not _lib.built_with_cuda():
            raise RuntimeError(
                "the model runs on CUDA, but this DynamicRad library was built without CUDA (nvcc was not "
                "found at install time); reinstall with the CUDA toolkit on the PATH"
            )
        if self.config.block_size not in CUDA_BLOCK_SIZES:
            raise ValueError(f"block_size = {self.config.block_size}: the CUDA engine takes "
                             f"{' or '.join(map(str, CUDA_BLOCK_SIZES))}")
        if head_dim not in _CUDA_HEAD_DIMS:
            raise ValueError(f"the model's attention_head_dim = {head_dim}: the CUDA engine takes "
                             f"{' or '.join(map(str, _CUDA_HEAD_DIMS))}")

    def is_dense(self, layer_in_model: int) -> bool:
        """Dense during warm-up steps and for a transformer's first ``dense_layers`` layers."""
        return self.step < self.config.warmup_steps or layer_in_model < self.config.dense_layers

    def _selects_now(self) -> bool:
        return (self.step - self.config.warmup_steps) % self.config.refresh_interval == 0

    def _slot(self, layer: int) -> int:
        call = self.call_in_step
        if call >= CALLS_PER_STEP:
            if self.config.refresh_interval > 1:
                raise ValueError(
                    f"refresh_interval = {self.config.refresh_interval}: layouts are kept for at most "
                    f"{CALLS_PER_STEP} transformer calls a step, this step made {call + 1}; use refresh_interval=1"
                )
            call = CALLS_PER_STEP - 1
        return layer * CALLS_PER_STEP + call

    # ---- engines ---------------------------------------------------------------------------
    def check_in_call(self) -> None:
        """ValueError unless a transformer call is running (its entry hook set the video geometry)."""
        if self.video is None:
            raise ValueError(
                "DynamicRad attention was called outside the transformer's forward: the video geometry "
                "is unknown (call the transformer, not the attention module)"
            )

    def geometry(self, heads: int, head_dim: int, text_tokens: int = 0) -> Geometry:
        """The running transformer call's token geometry for an attention of ``heads`` x ``head_dim``
        with ``text_tokens`` text tokens after the video (ValueError outside a call)."""
        self.check_in_call()
        v = self.video
        return Geometry(
            frames=v.frames, height=v.height, width=v.width, heads=heads, head_dim=head_dim,
            text_tokens=text_tokens, text_placement="suffix" if text_tokens else "none",
            block_size=self.config.block_size, token_order=self.config.token_order,
        )

    def _entry(self, geometry: Geometry):
        key = geometry
        if key not in self._selections:
            c = self.config
            entry = lut_entry(c.regime, c.mode, c.lut, geometry, c.lut_geometry)
            prior = {**entry.prior, **c.prior}
            selection = dataclasses.replace(entry.selection, **c.selection)
            self._selections[key] = (prior, selection)
        return self._selections[key]

    def engine(self, geometry: Geometry, device: torch.device) -> Engine:
        """The engine of one geometry on one device (made on first use, kept until disable())."""
        key = (geometry, str(device))
        engine = self._engines.get(key)
        if engine is None:
            prior, _ = self._entry(geometry)
            engine = Engine(
                geometry, prior=prior, device=device, slots=self.num_layers * CALLS_PER_STEP,
                keep_layouts=self.config.refresh_interval > 1 or self.config.keep_layouts,
                threads=self.config.threads,
            )
            self._engines[key] = engine
        return engine

    def _call_geometry(self, q: torch.Tensor, text_tokens: int) -> Geometry:
        """The geometry of an attention call; ValueError when q's tokens do not match it."""
        geometry = self.geometry(q.shape[2], q.shape[3], text_tokens)
        if q.shape[1] != geometry.tokens:
            raise ValueError(
                f"hidden_states: {q.shape[1]} tokens, but the transformer's input has {geometry.frames} x "
                f"{geometry.height} x {geometry.width} latent tokens + {text_tokens} text tokens = {geometry.tokens}"
            )
        return geometry

    def selection(self, geometry: Geometry) -> Selection:
        """The selection parameters of a geometry: the LUT row's, taus converted to the geometry, with
        the config's overrides."""
        return self._entry(geometry)[1]

    def attention(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text_tokens: int = 0,
                  pooled: Optional[tuple] = None) -> torch.Tensor:
        """Sparse attention of one layer for batch elements that share one text length.
        q, k, v: [batch, video + text_tokens, heads, head_dim]; pooled: None or (pooled_q, pooled_k,
        pool_block), the block means of the first blocks of q and k (``sparse_attention``'s)."""
        geometry = self._call_geometry(q, text_tokens)
        engine = self.engine(geometry, q.device)
        slot = self._slot(layer)
        layout_key = (id(engine), slot)
        # Reuse needs a layout of this slot for this batch; otherwise select now.
        select = self._selects_now() or self._layouts.get(layout_key) != q.shape[0]
        means, pool_block = (None, 0) if pooled is None else (pooled[:2], pooled[2])
        out, _ = sparse_attention(q, k, v, engine, self.selection(geometry), slot=slot, select=select, pooled=means,
                                  pool_block=pool_block)
        self._layouts[layout_key] = q.shape[0]
        if self._records_step.get(layer) != self.step:
            self._records[layer] = []
            self._records_step[layer] = self.step
        if (engine, slot) not in self._records[layer]:
            self._records[layer].append((engine, slot))
        return out

    def dense_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text_tokens: int = 0) -> torch.Tensor:
        """Dense attention of a dense layer or warm-up step on DynamicRad's kernels (where
        ``dense_backend`` resolves to "dynamicrad"), for batch elements that share one text length."""
        geometry = self._call_geometry(q, text_tokens)
        out, _ = dense_attention(q, k, v, self.engine(geometry, q.device))
        return out

    def record_dense(self, layer: int) -> None:
        """Notes that ``layer`` ran dense in the current step (for ``report()``)."""
        self._records[layer] = []
        self._records_step[layer] = self.step

    # ---- reports ---------------------------------------------------------------------------
    def report(self) -> list:
        """One LayerReport per self-attention layer for the last step it ran, summed over that step's
        transformer calls (both guidance branches); synchronises the GPU."""
        reports = []
        for layer in range(self.num_layers):
            if layer not in self._records_step:
                continue
            step = self._records_step[layer]
            records = self._records.get(layer, [])
            if not records:
                reports.append(LayerReport(layer=layer, step=step, dense=True))
                continue
            kept = total = 0
            for engine, slot in records:
                k, t = engine.kept(slot)
                kept, total = kept + k, total + t
            reports.append(LayerReport(layer=layer, step=step, dense=False, kept=kept, total=total))
        return reports

    def save_mask_png(self, path, layer: int, head: int = 0, batch: int = 0, call: int = 0) -> None:
        """A picture of one layer's layout in its last sparse step (one head of one batch element;
        ``call`` picks the guidance branch, or the prompt-length group for HunyuanVideo)."""
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.num_layers:
            raise ValueError(f"layer = {layer!r}: allowed range [0, {self.num_layers - 1}] (self-attention layers)")
        records = self._records.get(layer)
        if not records:
            raise ValueError(f"layer = {layer}: it has not run sparse attention yet (dense, or not called)")
        if not 0 <= _lib.c_int(call, "call") < len(records):
            raise ValueError(f"call = {call}: layer {layer} ran {len(records)} sparse call(s) in its last step")
        engine, slot = records[call]
        try:
            engine.save_mask_png(path, slot=slot, batch=batch, head=head)
        except ValueError as e:
            if "replaced" in str(e):
                raise ValueError(
                    f"layer = {layer}: its layout was replaced by a later layer's; enable DynamicRad with "
                    "keep_layouts=True to draw any layer"
                ) from None
            raise

    def mean_sparsity(self) -> float:
        """Mean sparsity over the sparse layers of the last step (0 when all were dense)."""
        sparse = [r.sparsity for r in self.report() if not r.dense]
        return sum(sparse) / len(sparse) if sparse else 0.0

    def device_bytes(self) -> int:
        """GPU memory DynamicRad's engines hold (priors, mask builders, plans, kept layouts)."""
        return sum(e.describe()["device_bytes"] for e in self._engines.values())

    def summary(self) -> str:
        """Options, step and the sparsity each layer reached in its last step, as text (synchronises
        the GPU)."""
        modes = sorted({selection.mode for _, selection in self._selections.values()})
        mode = self.config.mode or (f"{', '.join(modes)} (the regime's default)" if modes else "the regime's default")
        lines = [
            f"DynamicRad ({self.family}): regime {self.config.regime}, mode {mode}, step {self.step}, "
            f"{len(self._engines)} engine(s)"
        ]
        for r in self.report():
            what = "dense" if r.dense else f"sparsity {100 * r.sparsity:5.1f}% ({r.kept}/{r.total} blocks)"
            lines.append(f"  layer {r.layer:3d}: {what}")
        return "\n".join(lines)

    # ---- token order -----------------------------------------------------------------------
    def permutation(self, device: torch.device) -> Optional[tuple]:
        """(perm, inverse) index tensors of the video tokens for the 3D-tiled order, or None."""
        if self.config.token_order == "raster":
            return None
        v = self.video
        key = (v, str(device))
        if key not in self._permutations:
            g = Geometry(frames=v.frames, height=v.height, width=v.width, heads=1, head_dim=64,
                         block_size=self.config.block_size, token_order=self.config.token_order)
            perm = g.token_permutation()
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(perm.numel())
            self._permutations[key] = (perm.to(device), inverse.to(device))
        return self._permutations[key]

    # ---- disable() -------------------------------------------------------------------------
    def add_restore(self, undo) -> None:
        """Registers what ``restore()`` (``disable()``) undoes, last in first out."""
        self._restore.append(undo)

    def restore(self) -> None:
        """Undoes what enable() installed (processors, hooks) and frees the engines."""
        while self._restore:
            self._restore.pop()()
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
        self._records.clear()
        self._records_step.clear()
        self._layouts.clear()
