"""The [CLS] pretraining lab: small BERT encoders pretrained from scratch that differ in one thing.

The question clsviz was born from - *why is [CLS] first, and how does it come to represent the
sentence when it is trained like every other token?* - is answered here by running the experiment:
:func:`pretrain` trains an encoder on real running text with the summary token first, last or
absent, and with next-sentence prediction, sentence-order prediction or no sentence objective, and
measures it at checkpoints with clsviz's own instruments (probes of [CLS] and of the mean, the
attention sink, massive activations, anisotropy, CKA). The saved folder is a standard transformers
``BertForPreTraining`` (or ``BertForMaskedLM``) checkpoint that :func:`clsviz.load_encoder` opens
with its heads.

>>> from clsviz.lab import pretrain, lab_texts
>>> texts, corpus = lab_texts()
>>> run = pretrain(texts, summary="last", sentence_objective="nsp", steps=300, out="my-model", corpus_name=corpus)
>>> run.metrics.query("metric == 'probe_cls'")
>>> run.summary()
"""

from .books import CorpusMissing, austen_path, excerpt_texts, lab_texts, read_running_text
from .config import (
    DEFAULT_CHECKPOINTS,
    DEFAULT_STEPS,
    SENTENCE_OBJECTIVES,
    SUMMARIES,
    LabConfig,
    LabConfigError,
    SentenceObjective,
    Summary,
    variant_name,
)
from .data import LabDataError
from .reference import REFERENCE_VARIANTS
from .run import METRIC_COLUMNS, PretrainRun, compare_runs, lab_dir, open_run, saved_runs


def __getattr__(name: str):
    # The training loop (torch, transformers, accelerate) loads when a run is asked for, so that
    # importing the lab - the app's model list, the command line's --help, the analysis registry - stays light.
    if name in ("pretrain", "pretrain_set"):
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module 'clsviz.lab' has no attribute {name!r}")


__all__ = [
    "DEFAULT_CHECKPOINTS",
    "DEFAULT_STEPS",
    "METRIC_COLUMNS",
    "REFERENCE_VARIANTS",
    "SENTENCE_OBJECTIVES",
    "SUMMARIES",
    "CorpusMissing",
    "LabConfig",
    "LabConfigError",
    "LabDataError",
    "PretrainRun",
    "SentenceObjective",
    "Summary",
    "austen_path",
    "compare_runs",
    "excerpt_texts",
    "lab_dir",
    "lab_texts",
    "open_run",
    "pretrain",
    "pretrain_set",
    "read_running_text",
    "saved_runs",
    "variant_name",
]
