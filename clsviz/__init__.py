"""clsviz: live evidence about the [CLS] token of BERT-family encoders.

The package computes every number and builds every figure; it never imports Streamlit.
"""

# Submodules named by the public API (clsviz.heads.classifier_lens, clsviz.compare.cka).
from . import compare, heads
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
from .similarity import (
    Baseline,
    anisotropy_baseline,
    cls_summary,
    cls_token_cosines,
    compare_sentences,
    measure_baseline,
    sentence_benchmark,
)
from .tracing import Trace, trace

__all__ = [
    "Baseline",
    "Corpus",
    "CorpusError",
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderInfo",
    "ModelLoadError",
    "POOLING_STRATEGIES",
    "PooledVectors",
    "Trace",
    "anisotropy_baseline",
    "cls_summary",
    "cls_token_cosines",
    "compare",
    "compare_sentences",
    "demo_corpus",
    "demo_pairs",
    "extract",
    "heads",
    "load_corpus",
    "load_encoder",
    "load_pairs",
    "measure_baseline",
    "pool",
    "sentence_benchmark",
    "trace",
]

__version__ = "0.1.0"
