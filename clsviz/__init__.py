"""clsviz: live evidence about the [CLS] token of BERT-family encoders.

The package computes every number and builds every figure; it never imports Streamlit.
The rooms (one concern each) are listed in README.md, "Architecture".
"""

# Submodules named by the public API (clsviz.heads.classifier_lens, clsviz.compare.cka,
# clsviz.mixing.contributions, clsviz.attribution.attribute, clsviz.faithfulness.rank_measures).
from . import attribution, compare, faithfulness, heads, mixing
from .baseline import Baseline, anisotropy_baseline, measure_baseline
from .benchmark import sentence_benchmark
from .corpus import Corpus, demo_corpus, demo_pairs
from .encoder import DEFAULT_MODEL, Encoder, EncoderInfo, ModelLoadError, load_encoder
from .pooling import POOLINGS, pool
from .readers import CorpusError, load_corpus, load_pairs
from .similarity import cls_summary, cls_token_cosines, compare_sentences
from .tracing import Trace, trace
from .vectors import PooledVectors, extract
from .version import __version__

__all__ = [
    "__version__",
    "Baseline",
    "Corpus",
    "CorpusError",
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderInfo",
    "ModelLoadError",
    "POOLINGS",
    "PooledVectors",
    "Trace",
    "anisotropy_baseline",
    "attribution",
    "cls_summary",
    "cls_token_cosines",
    "compare",
    "compare_sentences",
    "demo_corpus",
    "demo_pairs",
    "extract",
    "faithfulness",
    "heads",
    "load_corpus",
    "load_encoder",
    "load_pairs",
    "measure_baseline",
    "mixing",
    "pool",
    "sentence_benchmark",
    "trace",
]

