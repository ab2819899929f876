"""Published findings about [CLS], checked live on the current model.

Each claim of the literature that clsviz can measure is written once, with its source, the
model it was measured on and the number as published, in ``clsviz/data/literature.toml``
(:func:`load_claims`). :func:`check_claims` measures every claim on an encoder with the same
protocol as far as the model allows and gives each a verdict (:data:`VERDICTS`) with the reason
in plain words; :func:`verdict` is the rule, a pure function of the claim's checks and the
measured numbers.

>>> from clsviz import load_encoder
>>> from clsviz.literature import check_claims
>>> table = check_claims(load_encoder())
>>> table[["source", "verdict", "reason"]]

Rooms: :mod:`.claims` (the data file and the verdict rule), :mod:`.measures` (one small
function per claim, on what clsviz measures itself), :mod:`.external` (claims that need an
experiment from another page or an optional module), :mod:`.table` (the table and its HTML).
"""

from .claims import (
    CHECK_KINDS,
    CLAIM_FIELDS,
    DIFFERS,
    NOT_HERE_YET,
    NOT_MEASURABLE,
    NOT_YET,
    REPRODUCES,
    VERDICTS,
    Claim,
    ClaimsFileError,
    check_sentence,
    load_claims,
    parse_claims,
    verdict,
)
from .external import OPTIONAL, SESSION_RESULTS, describe_elsewhere, optional, ranking_numbers
from .measures import MEASURED, Context, Measurement, matching_blocks, peak_depth, sample_texts
from .table import (
    COLUMNS,
    MEASURES,
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
    "MEASURED",
    "MEASURES",
    "NOT_HERE_YET",
    "NOT_MEASURABLE",
    "NOT_YET",
    "OPTIONAL",
    "REPRODUCES",
    "SESSION_RESULTS",
    "VERDICTS",
    "Claim",
    "ClaimsFileError",
    "Context",
    "Measurement",
    "check_claims",
    "check_sentence",
    "claims_html",
    "count_verdicts",
    "describe_elsewhere",
    "finding_sentence",
    "judge",
    "load_claims",
    "matching_blocks",
    "optional",
    "parse_claims",
    "peak_depth",
    "ranking_numbers",
    "sample_texts",
    "verdict",
    "with_elsewhere",
]
