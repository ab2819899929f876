"""clsviz: live evidence about the [CLS] token of BERT-family encoders.

The package computes every number and builds every figure; it never imports Streamlit.
"""

from .corpus import (
    Corpus,
    CorpusError,
    PooledVectors,
    demo_corpus,
    demo_pairs,
    extract,
    load_corpus,
    load_pairs,
)
from .encoder import DEFAULT_MODEL, Encoder, EncoderInfo, ModelLoadError, load_encoder
from .pooling import POOLING_STRATEGIES, pool
from .tracing import Trace, trace

__all__ = [
    "Corpus",
    "CorpusError",
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderInfo",
    "ModelLoadError",
    "POOLING_STRATEGIES",
    "PooledVectors",
    "Trace",
    "demo_corpus",
    "demo_pairs",
    "extract",
    "load_corpus",
    "load_encoder",
    "load_pairs",
    "pool",
    "trace",
]

__version__ = "0.1.0"
