"""Loads the C ABI (``libdynamicrad_c.so``, include/dynamicrad/c_api.h) with ctypes.

The library is looked up beside this file (where ``pip install`` puts it) unless the environment
variable ``DYNAMICRAD_LIBRARY`` names another build (for development: ``build/libdynamicrad_c.so``).
Error codes become Python exceptions: invalid input -> ``ValueError`` (the message names the
field), a file that cannot be opened, read or written -> ``OSError`` (the message names it), device or
system failures -> ``RuntimeError``.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

DR_OK = 0
DR_INVALID_ARGUMENT = 1
DR_RUNTIME_ERROR = 2
DR_BUFFER_TOO_SMALL = 3
DR_FILE_ERROR = 4

DTYPE_F32 = 0
DTYPE_F16 = 1
DTYPE_BF16 = 2

MODE_STATIC_RATIO = 0
MODE_DYNAMIC_THRESHOLD = 1

_ERROR_SIZE = 2048


class Tensor(ctypes.Structure):
    """``dr_tensor``: a [batch, tokens, heads, head_dim] view."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int32),
        ("batch", ctypes.c_int64),
        ("tokens", ctypes.c_int64),
        ("heads", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
    ]


class Selection(ctypes.Structure):
    """``dr_selection``."""

    _fields_ = [
        ("mode", ctypes.c_int32),
        ("r_near", ctypes.c_double),
        ("r_far", ctypes.c_double),
        ("tau_near", ctypes.c_double),
        ("tau_far", ctypes.c_double),
    ]


class NormRotaryOptions(ctypes.Structure):
    """``dr_norm_rotary_options``."""

    _fields_ = [
        ("norm_weight", ctypes.c_void_p),
        ("norm_eps", ctypes.c_double),
        ("norm_scope", ctypes.c_int32),
        ("norm_weighting", ctypes.c_int32),
        ("pairs", ctypes.c_int32),
        ("rotated_tokens", ctypes.c_int64),
        ("pooled", ctypes.c_void_p),
        ("pool_block", ctypes.c_int32),
        ("pooled_blocks", ctypes.c_int64),
    ]


def library_path() -> Path:
    override = os.environ.get("DYNAMICRAD_LIBRARY")
    if override:
        return Path(override)
    return Path(__file__).with_name("libdynamicrad_c.so")


@functools.lru_cache(maxsize=None)
def library() -> ctypes.CDLL:
    """The loaded C library (loaded once; the handle is immutable)."""
    path = library_path()
    if not path.exists():
        raise ImportError(
            f"DynamicRad's C library was not found at {path}: install the package with "
            "`pip install .` from the repository, or set DYNAMICRAD_LIBRARY to a built libdynamicrad_c.so"
        )
    lib = ctypes.CDLL(str(path))
    c_err = [ctypes.c_char_p, ctypes.c_size_t]
    vp, i32, i64p = ctypes.c_void_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_int64)
    sizep = ctypes.POINTER(ctypes.c_size_t)
    tp = ctypes.POINTER(Tensor)
    signatures = {
        "dr_version": ([], ctypes.c_char_p),
        "dr_built_with_cuda": ([], ctypes.c_int),
        "dr_engine_create": ([ctypes.c_char_p, ctypes.POINTER(vp)] + c_err, ctypes.c_int),
        "dr_engine_destroy": ([vp], None),
        "dr_engine_device": ([vp, ctypes.POINTER(i32), ctypes.POINTER(i32)] + c_err, ctypes.c_int),
        "dr_engine_describe": ([vp, ctypes.c_char_p, ctypes.c_size_t, sizep] + c_err, ctypes.c_int),
        "dr_engine_select": ([vp, tp, tp, ctypes.POINTER(Selection), i32, vp] + c_err, ctypes.c_int),
        "dr_engine_select_pooled": (
            [vp, tp, tp, vp, vp, ctypes.c_int64, i32, ctypes.POINTER(Selection), i32, vp] + c_err, ctypes.c_int
        ),
        "dr_engine_attend": ([vp, tp, tp, tp, tp, vp, i32, vp] + c_err, ctypes.c_int),
        "dr_engine_attend_dense": ([vp, tp, tp, tp, tp, vp, vp] + c_err, ctypes.c_int),
        "dr_engine_kept": ([vp, i32, i64p, i64p] + c_err, ctypes.c_int),
        "dr_engine_layout": ([vp, i32, i64p, i64p, vp, vp] + c_err, ctypes.c_int),
        "dr_engine_mask_png": ([vp, i32, ctypes.c_int64, ctypes.c_int64, i32, ctypes.c_char_p] + c_err, ctypes.c_int),
        "dr_norm_rotary": ([tp, tp, ctypes.POINTER(NormRotaryOptions), vp, vp, i32, vp] + c_err, ctypes.c_int),
        "dr_token_permutation": ([ctypes.c_char_p, vp, ctypes.c_int64] + c_err, ctypes.c_int),
        "dr_preset_geometry": ([ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, sizep] + c_err, ctypes.c_int),
        "dr_lut_entry": (
            [ctypes.c_char_p] * 5 + [ctypes.c_char_p, ctypes.c_size_t, sizep] + c_err,
            ctypes.c_int,
        ),
    }
    for name, (args, result) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = result
    return lib


def c_int(value, name: str, bits: int = 32) -> int:
    """``value`` for a C argument of ``bits`` bits: TypeError unless an integer, ValueError naming
    ``name`` when it does not fit (ctypes would wrap it around silently; the library checks the
    allowed range of the values that fit)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} = {value!r}: must be an integer")
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not low <= value <= high:
        raise ValueError(f"{name} = {value}: outside the range of a {bits}-bit integer [{low}, {high}]")
    return value


def error_buffer() -> ctypes.Array:
    return ctypes.create_string_buffer(_ERROR_SIZE)


def check(status: int, error: ctypes.Array, what: str) -> None:
    """Raises the exception for a C status code."""
    if status == DR_OK:
        return
    message = error.value.decode("utf-8", "replace") or f"{what} failed (status {status})"
    if status in (DR_INVALID_ARGUMENT, DR_BUFFER_TOO_SMALL):
        raise ValueError(message)
    if status == DR_FILE_ERROR:
        raise OSError(message)
    raise RuntimeError(f"{what}: {message}")


def call_text(fn, *args) -> str:
    """Calls a C function that writes JSON text (two-call pattern on DR_BUFFER_TOO_SMALL)."""
    size = 4096
    for _ in range(2):
        out = ctypes.create_string_buffer(size)
        needed = ctypes.c_size_t(0)
        error = error_buffer()
        status = fn(*args, out, size, ctypes.byref(needed), error, _ERROR_SIZE)
        if status == DR_BUFFER_TOO_SMALL and needed.value > size:
            size = needed.value
            continue
        check(status, error, fn.__name__)
        return out.value.decode("utf-8")
    raise RuntimeError(f"{fn.__name__}: output kept growing")


def version() -> str:
    """The C library's version (``dynamicrad --version`` prints the same)."""
    return library().dr_version().decode()


def built_with_cuda() -> bool:
    """Whether the loaded C library has the CUDA engine (nvcc was found when it was built); without it,
    CUDA tensors raise a clear error."""
    return bool(library().dr_built_with_cuda())
