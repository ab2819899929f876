"""The "What flows into [CLS]?" page's vocabulary: display names of the measures, methods and
targets, and the job slots of its two background analyses (value zeroing, the scoreboard).

Everything the page computes goes through :mod:`ui.runner` (the ``mixing``, ``mixing.compare``,
``mixing.value_zeroing``, ``attribution`` and ``faithfulness`` analyses)."""

from __future__ import annotations

from clsviz import Encoder
from clsviz.attribution import METHOD_NAMES as ATTRIBUTION_NAMES
from clsviz.faithfulness import MEASURE_NAMES, MEASURES
from clsviz.mixing import BARELY_MIXES, METHOD_NAMES

__all__ = [
    "ATTRIBUTION_NAMES",
    "BARELY_MIXES",
    "MEASURE_NAMES",
    "METHOD_NAMES",
    "SCOREBOARD_MEASURES",
    "SCOREBOARD_SLOT",
    "TARGET_NAMES",
    "VALUE_ZEROING_SLOT",
    "board_targets",
]

VALUE_ZEROING_SLOT = "mixing.value_zeroing"
SCOREBOARD_SLOT = "mixing.scoreboard"
SCOREBOARD_MEASURES = MEASURES
TARGET_NAMES = {"auto": "a probe's or the classifier's logit", "classifier": "classifier logit",
                "probe": "sentiment probe logit", "self_similarity": "cosine to itself"}  # fmt: skip


def board_targets(encoder: Encoder) -> list[str]:
    """The scoreboard targets this model offers: the default (its classifier's logit when it has
    a head, else a demo sentiment probe's), the classifier explicitly when there is one, the
    cosine to itself."""
    return ["auto", *(["classifier"] if encoder.classifier is not None else []), "self_similarity"]
