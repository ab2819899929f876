"""clsviz: live evidence about the [CLS] token of BERT-family encoders.

The package computes every number and builds every figure; it never imports Streamlit.
"""

from .corpus import PooledVectors, extract
from .encoder import DEFAULT_MODEL, Encoder, EncoderInfo, ModelLoadError, load_encoder
from .pooling import POOLING_STRATEGIES, pool
from .tracing import Trace, trace

__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderInfo",
    "ModelLoadError",
    "POOLING_STRATEGIES",
    "PooledVectors",
    "Trace",
    "extract",
    "load_encoder",
    "pool",
    "trace",
]

__version__ = "0.1.0"
