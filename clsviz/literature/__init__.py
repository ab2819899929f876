"""Published findings about [CLS], checked live on the current model.

Each claim of the literature that clsviz can measure is written once, with its source, the
model it was measured on (and the model it needs: ``requires``), the number as published and
the data used here instead of the paper's, in ``clsviz/data/literature.toml``
(:func:`load_claims`). :func:`check_claims` measures every claim on an encoder with the same
protocol as far as the model allows, each deciding number with its 95% interval, and gives each
row one of five verdicts (:data:`VERDICTS`): "reproduces" or "differs" only when the interval
clears the rule's threshold, "inconclusive" when it straddles it, "not measurable on this
model" when the model does not meet the claim's precondition, "not measured yet" when an input
is missing. :func:`verdict` is the rule (:mod:`clsviz.verdicts`), a pure function of the claim's
checks and the measured numbers.

>>> from clsviz import load_encoder
>>> from clsviz.literature import check_claims
>>> table = check_claims(load_encoder())
>>> table[["source", "verdict", "low", "high", "threshold", "caveat"]]

Rooms: :mod:`.claims` (the data file, the preconditions and the verdict rule), :mod:`.measures`
(one small function per claim, on what clsviz measures itself), :mod:`.probing` (the layer
profile of probes), :mod:`.finetuning` (a fine-tuned copy against this model), :mod:`.external`
(claims that run the causal tests or the faithfulness scoreboard), :mod:`.table` (the table and
its HTML).
"""

from .claims import (
    CHECK_KINDS,
    CLAIM_FIELDS,
    DIFFERS,
    INCONCLUSIVE,
    NOT_MEASURABLE,
    NOT_YET,
    REPRODUCES,
    REQUIREMENTS,
    VERDICTS,
    Claim,
    ClaimsFileError,
    decisions,
    load_claims,
    parse_claims,
    unmet,
    verdict,
)
from .external import (
    OPTIONAL,
    SESSION_RESULTS,
    ablation_numbers,
    describe_elsewhere,
    mixing_numbers,
    optional,
    varying_layer,
)
from .finetuning import layer_thirds, weighted_cka
from .measures import MEASURED, Context, Measurement, matching_blocks, sample_texts
from .probing import out_of_fold_correct, peak_layer
from .table import (
    COLUMNS,
    MEASURES,
    caveat,
    check_claims,
    claims_html,
    count_verdicts,
    finding_sentence,
    judge,
    with_elsewhere,
)

__all__ = [
    "CHECK_KINDS",
    "CLAIM_FIELDS",
    "COLUMNS",
    "DIFFERS",
    "INCONCLUSIVE",
    "MEASURED",
    "MEASURES",
    "NOT_MEASURABLE",
    "NOT_YET",
    "OPTIONAL",
    "REPRODUCES",
    "REQUIREMENTS",
    "SESSION_RESULTS",
    "VERDICTS",
    "Claim",
    "ClaimsFileError",
    "Context",
    "Measurement",
    "ablation_numbers",
    "caveat",
    "check_claims",
    "claims_html",
    "count_verdicts",
    "decisions",
    "describe_elsewhere",
    "finding_sentence",
    "judge",
    "layer_thirds",
    "load_claims",
    "matching_blocks",
    "mixing_numbers",
    "optional",
    "out_of_fold_correct",
    "parse_claims",
    "peak_layer",
    "sample_texts",
    "unmet",
    "varying_layer",
    "verdict",
    "weighted_cka",
    "with_elsewhere",
]
