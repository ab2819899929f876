"""What a lab run is made of: the variant (where the summary token sits, which sentence objective)
and the size of the encoder, each checked with a message that lists what is allowed.

* :data:`Summary` - ``"first"`` (the usual [CLS] at position 0), ``"last"`` (the same token after
  the final separator), ``"none"`` (no summary token: the sentence vector is the mean of the tokens)
* :data:`SentenceObjective` - ``"nsp"`` (next-sentence prediction, as BERT), ``"sop"``
  (sentence-order prediction, as ALBERT) or None (masked language modelling only, as RoBERTa)
* :class:`LabConfig` - the encoder's size and the training settings; ``LabConfig.from_any`` reads
  a plain dict (the keys the issue names: ``layers``, ``hidden``, ``heads``, ``intermediate``,
  ``max_tokens``; the others are optional)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

__all__ = [
    "DEFAULT_CHECKPOINTS",
    "DEFAULT_STEPS",
    "MODEL_SIZES",
    "OBJECTIVE_HELP",
    "SENTENCE_OBJECTIVES",
    "SUMMARIES",
    "SUMMARY_HELP",
    "LabConfig",
    "LabConfigError",
    "SentenceObjective",
    "Summary",
    "check_objective",
    "check_settings",
    "check_summary",
    "check_whole",
    "variant_name",
]

Summary = Literal["first", "last", "none"]
SentenceObjective = Literal["nsp", "sop"]
SUMMARIES: tuple[str, ...] = get_args(Summary)
SENTENCE_OBJECTIVES: tuple[str | None, ...] = (*get_args(SentenceObjective), None)

SUMMARY_HELP = {
    "first": "[CLS] at position 0, as BERT",
    "last": "the same token after the final [SEP]",
    "none": "no summary token; the sentence vector is the mean of the tokens",
}
OBJECTIVE_HELP = {
    "nsp": "next-sentence prediction (is B the sentence after A, or a random one?), as BERT",
    "sop": "sentence-order prediction (are A and B in their order, or swapped?), as ALBERT",
    None: "masked language modelling only, as RoBERTa",
}

DEFAULT_STEPS = 1200
"""Optimiser steps of the app's default run (``benchmarks/lab.py`` times it on 2 CPU cores)."""

DEFAULT_CHECKPOINTS = 6
"""Measurement points of a default run, step 0 and the last step included."""


MODEL_SIZES = {
    "default": {},
    "small": {"layers": 4, "hidden": 64, "heads": 4, "intermediate": 256, "vocab_size": 4000},
    "tiny": {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64, "max_tokens": 40, "vocab_size": 1000,
             "batch_size": 16},
}
"""Named sizes (changes to the :class:`LabConfig` defaults): ``default`` (4 layers of 128 dims, the
app's default run), ``small`` (4 layers of 64 dims, what ``make lab`` trains), ``tiny`` (2 layers of
32 dims: a quick try, minutes on a busy machine)."""


class LabConfigError(ValueError):
    """A lab setting is out of range or unknown; the message says what is allowed."""


def check_summary(summary) -> str:
    """``summary`` if it is one of :data:`SUMMARIES`, else :class:`LabConfigError` listing them."""
    if summary not in SUMMARIES:
        raise LabConfigError(
            f"Unknown summary {summary!r}. Valid: "
            + "; ".join(f"{s!r} ({SUMMARY_HELP[s]})" for s in SUMMARIES) + "."
        )
    return summary


def check_objective(objective) -> str | None:
    """``objective`` (``"none"`` and ``""`` read as None) if it is one of :data:`SENTENCE_OBJECTIVES`,
    else :class:`LabConfigError` listing them."""
    if isinstance(objective, str) and objective.strip().lower() in ("", "none", "mlm"):
        return None
    if objective not in SENTENCE_OBJECTIVES:
        raise LabConfigError(
            f"Unknown sentence objective {objective!r}. Valid: 'nsp' ({OBJECTIVE_HELP['nsp']}), "
            f"'sop' ({OBJECTIVE_HELP['sop']}) or None ({OBJECTIVE_HELP[None]})."
        )
    return objective


def variant_name(summary: str, objective: str | None) -> str:
    """A short name for a variant, used in folder names, legends and tables: ``"first+nsp"``."""
    return f"{summary}+{objective or 'mlm'}"


# (lowest, highest) of each integer setting; a value outside gets a message naming the range.
_INT_RANGES = {
    "layers": (1, 24),
    "hidden": (8, 2048),
    "heads": (1, 64),
    "intermediate": (8, 8192),
    "max_tokens": (8, 512),
    "vocab_size": (200, 60000),
    "batch_size": (2, 4096),
}
_FLOAT_RANGES = {
    "learning_rate": (1e-6, 1e-1),
    "warmup": (0.0, 0.5),
    "weight_decay": (0.0, 1.0),
    "mlm_probability": (0.01, 0.5),
}


@dataclass(frozen=True)
class LabConfig:
    """The encoder's size and the training settings of a lab run.

    * ``layers``, ``hidden``, ``heads``, ``intermediate``: a BERT encoder's ``num_hidden_layers``,
      ``hidden_size``, ``num_attention_heads`` and ``intermediate_size`` (``hidden`` a multiple of
      ``heads``)
    * ``max_tokens``: the longest input in tokens, special tokens included (also the position table)
    * ``vocab_size``: the WordPiece vocabulary trained on the corpus (saved with the model)
    * ``batch_size``, ``learning_rate`` (AdamW, linear warm-up over ``warmup`` of the steps then
      linear decay), ``weight_decay``, ``mlm_probability`` (the share of tokens masked)

    The defaults are the app's default run: about 10 minutes on 2 CPU cores with
    :data:`DEFAULT_STEPS` steps (``benchmarks/lab.py``).
    """

    layers: int = 4
    hidden: int = 128
    heads: int = 4
    intermediate: int = 512
    max_tokens: int = 64
    vocab_size: int = 8000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup: float = 0.06
    weight_decay: float = 0.01
    mlm_probability: float = 0.15

    def __post_init__(self) -> None:
        for name, (low, high) in _INT_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise LabConfigError(f"config {name!r} must be a whole number from {low} to {high}, got {value!r}.")
        for name, (low, high) in _FLOAT_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
                raise LabConfigError(f"config {name!r} must be a number from {low:g} to {high:g}, got {value!r}.")
            object.__setattr__(self, name, float(value))
        if self.hidden % self.heads:
            raise LabConfigError(
                f"config 'hidden' ({self.hidden}) must be a multiple of 'heads' ({self.heads}): each head gets "
                f"hidden / heads dimensions. Try hidden={self.heads * max(1, round(self.hidden / self.heads))}."
            )

    @classmethod
    def from_any(cls, config=None) -> LabConfig:
        """A :class:`LabConfig` from None (the defaults), a mapping of some of its fields, or a
        dataclass with such fields. Unknown keys are refused with the list of known ones."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.asdict(config)
        if not hasattr(config, "items"):
            raise LabConfigError(f"config must be a dict (or a LabConfig), got {type(config).__name__}.")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in config if k not in known)
        if unknown:
            raise LabConfigError(f"Unknown config key(s) {', '.join(unknown)}. Valid: {', '.join(known)}.")
        return cls(**dict(config))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_whole(name: str, value, low: int, high: int) -> int:
    """``value`` as an int if it is a whole number from ``low`` to ``high``, else ValueError saying so."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
    return int(value)


def check_settings(config, steps, seed, checkpoints) -> tuple[LabConfig, int, int, int]:
    """(config, steps, seed, checkpoints) of a run, checked: a :class:`LabConfigError` or ValueError
    saying what is allowed. Quick: it runs before any text is read or folder made."""
    return (LabConfig.from_any(config), check_whole("steps", steps, 1, 10_000_000),
            check_whole("seed", seed, 0, 2**31 - 1), check_whole("checkpoints", checkpoints, 0, 100))  # fmt: skip
