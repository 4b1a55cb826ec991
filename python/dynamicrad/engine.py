"""The engine from Python: geometry, selection parameters, LUT rows and ``Engine`` (one geometry,
its radial prior and per-slot layouts), a thin wrapper of the C ABI."""

from __future__ import annotations

import ctypes
import json
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from . import _library as _lib

REGIMES = ("low", "mid", "high")
MODES = ("static-ratio", "dynamic-threshold")


@dataclass(frozen=True)
class Geometry:
    """How one attention call's tokens are laid out (include/dynamicrad/geometry.h).

    frames x height x width latent video tokens (after patching), then ``text_tokens`` text tokens
    (HunyuanVideo's joint attention: ``text_placement="suffix"``)."""

    frames: int
    height: int
    width: int
    heads: int
    head_dim: int
    text_tokens: int = 0
    text_placement: str = "none"
    block_size: int = 128
    token_order: str = "raster"
    tile: Optional[tuple] = None

    @property
    def video_tokens(self) -> int:
        return self.frames * self.height * self.width

    @property
    def tokens(self) -> int:
        return self.video_tokens + self.text_tokens

    @classmethod
    def preset(cls, name: str, **overrides) -> "Geometry":
        """A named model geometry (``dynamicrad mask --help`` lists them), e.g.
        ``Geometry.preset("wan2.1-14b-720p")``; keyword overrides replace fields."""
        text = _lib.call_text(_lib.library().dr_preset_geometry, str(name).encode())
        fields = json.loads(text)
        if "tile" in fields:
            fields["tile"] = tuple(fields["tile"])
        return cls(**{**fields, **overrides})

    def to_json(self) -> str:
        d = asdict(self)
        if d["tile"] is None:
            del d["tile"]
        else:
            d["tile"] = list(d["tile"])
        return json.dumps(d)

    def token_permutation(self) -> torch.Tensor:
        """perm[p] = raster position of the token at sequence position p (int64, CPU)."""
        perm = torch.empty(self.tokens, dtype=torch.int64)
        error = _lib.error_buffer()
        status = _lib.library().dr_token_permutation(
            self.to_json().encode(), ctypes.c_void_p(perm.data_ptr()), self.tokens, error, len(error)
        )
        _lib.check(status, error, "token_permutation")
        return perm


@dataclass(frozen=True)
class Selection:
    """Dual-mode selection parameters (include/dynamicrad/select.h)."""

    mode: str = "static-ratio"
    r_near: float = 0.5
    r_far: float = 0.25
    tau_near: float = 0.002
    tau_far: float = 0.004

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"selection.mode = {self.mode!r}: allowed values are {', '.join(MODES)}")

    @property
    def mode_code(self) -> int:
        return _lib.MODE_STATIC_RATIO if self.mode == "static-ratio" else _lib.MODE_DYNAMIC_THRESHOLD


@dataclass(frozen=True)
class LutEntry:
    """One LUT row: the radial prior parameters and the selection for a (regime, mode)."""

    regime: str
    prior: dict = field(default_factory=dict)
    selection: Selection = field(default_factory=Selection)


def lut_entry(
    regime: str,
    mode: Optional[str] = None,
    lut: Optional[str] = None,
    geometry: Optional[Geometry] = None,
    lut_geometry: Optional[str] = None,
) -> LutEntry:
    """Reads a LUT row (the built-in table when ``lut`` is None). ``mode=None`` takes the regime's
    default (static-ratio for low/mid, dynamic-threshold for high). With ``geometry``, the
    dynamic-threshold taus are converted to that geometry from the preset the LUT is calibrated for
    (its "calibrated_for" field; the built-in table's is Wan2.1-14B 720p), or from ``lut_geometry``
    for a LUT that does not say."""
    if regime not in REGIMES:
        raise ValueError(f"regime = {regime!r}: allowed values are {', '.join(REGIMES)}")
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode = {mode!r}: allowed values are {', '.join(MODES)} (or None for the regime's default)")
    lib = _lib.library()
    text = _lib.call_text(
        lib.dr_lut_entry,
        None if lut is None else str(lut).encode(),
        regime.encode(),
        None if mode is None else mode.encode(),
        None if geometry is None else geometry.to_json().encode(),
        None if lut_geometry is None else lut_geometry.encode(),
    )
    row = json.loads(text)["rows"][0]
    return LutEntry(regime=row["regime"], prior=row["prior"], selection=Selection(mode=row["mode"], **row["selection"]))


_DTYPES = {torch.float32: _lib.DTYPE_F32, torch.float16: _lib.DTYPE_F16, torch.bfloat16: _lib.DTYPE_BF16}


def c_tensor(t: torch.Tensor, name: str) -> _lib.Tensor:
    if t.dtype not in _DTYPES:
        raise ValueError(f"{name}: dtype {t.dtype} is not supported (float32, float16, bfloat16)")
    if t.dim() != 4:
        raise ValueError(f"{name}: expected [batch, tokens, heads, head_dim], got shape {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name}: must be contiguous")
    b, n, h, d = t.shape
    return _lib.Tensor(t.data_ptr(), _DTYPES[t.dtype], b, n, h, d)


class Engine:
    """One geometry's radial prior and layouts on one device (include/dynamicrad/engine.h).

    ``slots``: how many layouts can be told apart (an integration uses one slot per layer);
    ``keep_layouts``: every slot keeps its own layout (for refresh intervals), otherwise a slot's
    layout is only usable until the next ``select``."""

    def __init__(
        self,
        geometry: Geometry,
        prior: Optional[dict] = None,
        device: "str | torch.device" = "cpu",
        slots: int = 1,
        keep_layouts: bool = False,
        scale: float = 0.0,
        threads: int = 0,
    ):
        device = torch.device(device)
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device = {device}: allowed device types are cpu, cuda")
        self.geometry = geometry
        self.device = device
        options = {
            "geometry": json.loads(geometry.to_json()),
            "device": device.type,
            "slots": slots,
            "keep_layouts": keep_layouts,
            "scale": scale,
            "threads": threads,
        }
        if prior is not None:
            options["prior"] = dict(prior)
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            options["cuda_device"] = index
        handle = ctypes.c_void_p()
        error = _lib.error_buffer()
        status = _lib.library().dr_engine_create(json.dumps(options).encode(), ctypes.byref(handle), error, len(error))
        _lib.check(status, error, "Engine")
        self._handle = handle

    @property
    def handle(self) -> int:
        """The C handle as an integer (what the torch operator takes)."""
        if not self._handle:
            raise ValueError("engine: closed")
        return int(self._handle.value)

    def close(self) -> None:
        if getattr(self, "_handle", None):
            _lib.library().dr_engine_destroy(self._handle)
            self._handle = ctypes.c_void_p()

    def __del__(self):
        self.close()

    def describe(self) -> dict:
        """tokens, blocks, the prior's forced / near / far block counts and density, device bytes."""
        lib = _lib.library()
        return json.loads(_lib.call_text(lib.dr_engine_describe, self._handle))

    def kept(self, slot: int) -> tuple:
        """(kept block pairs, dense block pairs) of the slot's last layout (synchronises the device)."""
        kept, total = ctypes.c_int64(), ctypes.c_int64()
        error = _lib.error_buffer()
        status = _lib.library().dr_engine_kept(
            self._handle, _lib.c_int(slot, "slot"), ctypes.byref(kept), ctypes.byref(total), error, len(error)
        )
        _lib.check(status, error, "kept")
        return kept.value, total.value

    def layout(self, slot: int) -> tuple:
        """The slot's layout as CSR (row_offsets int64 [rows + 1], col_indices int32), CPU tensors."""
        lib = _lib.library()
        rows, entries = ctypes.c_int64(), ctypes.c_int64()
        error = _lib.error_buffer()
        slot = _lib.c_int(slot, "slot")
        status = lib.dr_engine_layout(self._handle, slot, ctypes.byref(rows), ctypes.byref(entries), None, None, error, len(error))
        _lib.check(status, error, "layout")
        offsets = torch.empty(rows.value + 1, dtype=torch.int64)
        cols = torch.empty(entries.value, dtype=torch.int32)
        status = lib.dr_engine_layout(
            self._handle, slot, ctypes.byref(rows), ctypes.byref(entries),
            ctypes.c_void_p(offsets.data_ptr()), ctypes.c_void_p(cols.data_ptr()), error, len(error),
        )
        _lib.check(status, error, "layout")
        return offsets, cols

    def save_mask_png(self, path, slot: int = 0, batch: int = 0, head: int = 0, cell_pixels: int = 0) -> None:
        """A picture of one head's layout over the radial prior (forced blocks dark, kept candidates
        blue, dropped candidates grey, frame boundaries as thin lines)."""
        error = _lib.error_buffer()
        slot, cell_pixels = _lib.c_int(slot, "slot"), _lib.c_int(cell_pixels, "cell_pixels")
        batch, head = _lib.c_int(batch, "batch", 64), _lib.c_int(head, "head", 64)
        status = _lib.library().dr_engine_mask_png(
            self._handle, slot, batch, head, cell_pixels, str(path).encode(), error, len(error)
        )
        _lib.check(status, error, "save_mask_png")

    def select(self, q: torch.Tensor, k: torch.Tensor, selection: Selection, slot: int = 0,
               pooled: Optional[tuple] = None, pool_block: int = 0) -> None:
        """Selects the slot's layout from q and k ([batch, tokens, heads, head_dim]); ``pooled``: the
        block means of the first blocks of q and k, already computed (``norm_rotary_pooled``), over
        blocks of ``pool_block`` tokens (the geometry's block size)."""
        pooled_q, pooled_k = (None, None) if pooled is None else pooled
        select_into(self.handle, q, k, selection.mode_code, selection.r_near, selection.r_far,
                    selection.tau_near, selection.tau_far, slot, pooled_q, pooled_k, pool_block)

    def attend(self, q, k, v, out, lse: Optional[torch.Tensor], slot: int = 0) -> None:
        """Writes attention over the slot's layout into ``out`` (and ``lse``, float32 [batch, heads, tokens])."""
        attend_into(self.handle, q, k, v, out, lse, slot)

    def attend_dense(self, q, k, v, out, lse: Optional[torch.Tensor] = None) -> None:
        """Writes dense attention (every block pair, no layout) on the engine's kernels into ``out``."""
        attend_into(self.handle, q, k, v, out, lse, None)


def _stream(t: torch.Tensor):
    if t.device.type != "cuda":
        return None
    return ctypes.c_void_p(torch.cuda.current_stream(t.device).cuda_stream)


def check_engine_device(handle: int, t: torch.Tensor, name: str) -> None:
    """Raises ValueError unless ``t`` lives on the engine's device (pointers are passed unchecked)."""
    kind, ordinal = ctypes.c_int32(), ctypes.c_int32()
    error = _lib.error_buffer()
    status = _lib.library().dr_engine_device(
        ctypes.c_void_p(handle), ctypes.byref(kind), ctypes.byref(ordinal), error, len(error)
    )
    _lib.check(status, error, "engine")
    want = "cuda" if kind.value == 1 else "cpu"
    if t.device.type != want or (want == "cuda" and ordinal.value >= 0 and t.device.index != ordinal.value):
        where = want if want == "cpu" or ordinal.value < 0 else f"cuda:{ordinal.value}"
        raise ValueError(f"{name}: on {t.device}, the engine runs on {where}")


def select_into(handle: int, q, k, mode: int, r_near: float, r_far: float, tau_near: float, tau_far: float,
                slot: int, pooled_q: Optional[torch.Tensor] = None, pooled_k: Optional[torch.Tensor] = None,
                pool_block: int = 0) -> None:
    """dr_engine_select on a raw handle (the torch operator's path); with pooled_q / pooled_k (the
    block means of the first blocks, [batch, heads, blocks, head_dim] float32, e.g. from
    ``norm_rotary_pooled``, over blocks of ``pool_block`` tokens) dr_engine_select_pooled."""
    slot = _lib.c_int(slot, "slot")
    check_engine_device(handle, q, "q")
    cq, ck = c_tensor(q, "q"), c_tensor(k, "k")
    sel = _lib.Selection(mode, r_near, r_far, tau_near, tau_far)
    error = _lib.error_buffer()
    if pooled_q is None and pooled_k is None:
        status = _lib.library().dr_engine_select(
            ctypes.c_void_p(handle), ctypes.byref(cq), ctypes.byref(ck), ctypes.byref(sel), slot, _stream(q), error,
            len(error),
        )
        _lib.check(status, error, "select")
        return
    if pooled_q is None or pooled_k is None:
        raise ValueError("pooled_q, pooled_k: give both block means or neither")
    pool_block = _lib.c_int(pool_block, "pool_block")
    b, _, h, d = q.shape
    blocks = pooled_q.shape[2] if pooled_q.dim() == 4 else -1
    for t, name in ((pooled_q, "pooled_q"), (pooled_k, "pooled_k")):
        if t.dtype != torch.float32 or t.dim() != 4 or tuple(t.shape) != (b, h, blocks, d):
            raise ValueError(f"{name}: expected float32 [batch, heads, blocks, head_dim] = [{b}, {h}, blocks, {d}] "
                             f"(the same blocks for both), got {t.dtype} {tuple(t.shape)}")
        check_engine_device(handle, t, name)
    pooled_q, pooled_k = pooled_q.contiguous(), pooled_k.contiguous()
    status = _lib.library().dr_engine_select_pooled(
        ctypes.c_void_p(handle), ctypes.byref(cq), ctypes.byref(ck), ctypes.c_void_p(pooled_q.data_ptr()),
        ctypes.c_void_p(pooled_k.data_ptr()), blocks, pool_block, ctypes.byref(sel), slot, _stream(q), error,
        len(error),
    )
    _lib.check(status, error, "select")


def attend_into(handle: int, q, k, v, out, lse: Optional[torch.Tensor], slot: Optional[int]) -> None:
    """dr_engine_attend on a raw handle (the torch operator's path); slot None: dr_engine_attend_dense
    (every block pair, no layout)."""
    for t, name in ((q, "q"), (k, "k"), (v, "v"), (out, "out")):
        check_engine_device(handle, t, name)
    tensors = [c_tensor(t, name) for t, name in ((q, "q"), (k, "k"), (v, "v"), (out, "out"))]
    lse_ptr = None
    if lse is not None:
        b, n, h, _ = q.shape
        if lse.dtype != torch.float32 or tuple(lse.shape) != (b, h, n) or not lse.is_contiguous():
            raise ValueError(f"lse: expected contiguous float32 {(b, h, n)}, got {lse.dtype} {tuple(lse.shape)}")
        lse_ptr = ctypes.c_void_p(lse.data_ptr())
    error = _lib.error_buffer()
    lib, args = _lib.library(), (ctypes.c_void_p(handle), *[ctypes.byref(t) for t in tensors], lse_ptr)
    if slot is not None:
        slot = _lib.c_int(slot, "slot")
    if slot is None:
        status = lib.dr_engine_attend_dense(*args, _stream(q), error, len(error))
    else:
        status = lib.dr_engine_attend(*args, slot, _stream(q), error, len(error))
    _lib.check(status, error, "attend")
