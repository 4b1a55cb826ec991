"""DynamicRad: radial-prior, dual-mode block-sparse attention for video diffusion transformers.

    import dynamicrad
    state = dynamicrad.enable(pipe, regime="high")   # WanPipeline / HunyuanVideoPipeline
    video = pipe(prompt, ...).frames[0]
    print(state.summary())                           # sparsity achieved per layer
    dynamicrad.disable(pipe)

The engine is C++/CUDA (libdynamicrad_c.so); this package validates, converts and installs it.
"""

from ._library import built_with_cuda, version
from .config import DynamicRadConfig
from .engine import MODES, REGIMES, Engine, Geometry, LutEntry, Selection, lut_entry
from .integrations import disable, enable
from .ops import dense_attention, norm_rotary, norm_rotary_pooled, rotary, sparse_attention
from .state import DynamicRadState

__version__ = "0.1.0"

__all__ = [
    "DynamicRadConfig",
    "DynamicRadState",
    "Engine",
    "Geometry",
    "LutEntry",
    "MODES",
    "REGIMES",
    "Selection",
    "built_with_cuda",
    "dense_attention",
    "disable",
    "enable",
    "lut_entry",
    "norm_rotary",
    "norm_rotary_pooled",
    "rotary",
    "sparse_attention",
    "version",
]
