"""The "Could any token do?" page's computation as one background job (no Streamlit here, so
the job's worker process can import it): the random-token vectors when asked for and not
cached, the linear probe, and optionally the control task and the MDL probe, reported as one
progress ("step 2 of 3 (control task): 40 of 98")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clsviz import Encoder
from clsviz.experiments import (
    RANDOM_TOKEN,
    ProbeResult,
    random_token_vectors,
    run_mdl,
    run_probe,
    run_selectivity,
    word_types,
)
from clsviz.progress import Steps, check_cancel

__all__ = ["ProbeSuite", "probe_suite"]


@dataclass(frozen=True)
class ProbeSuite:
    """What :func:`probe_suite` computed: the probe, the extras asked for ("selectivity",
    "mdl": tidy tables) and the random-token vectors it read (None when not asked for or given)."""

    result: ProbeResult
    extras: dict
    random_vectors: np.ndarray | None = None


def probe_suite(
    vectors,
    labels: Sequence,
    *,
    poolings: Sequence[str],
    texts: Sequence[str] = (),
    encoder: Encoder | None = None,
    random_vectors: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
    label_name: str | None = None,
    control: bool = False,
    mdl: bool = False,
    memory_budget: int | None = None,
    progress=None,
    cancel=None,
) -> ProbeSuite:
    """The probe of ``labels`` from ``vectors`` (PooledVectors, saved or sharded vectors, or {}
    when only the random token is probed) at every layer x pooling, then the control task
    (``control``) and the MDL probe (``mdl``) on the same rows. ``RANDOM_TOKEN`` in
    ``poolings`` reads one random content token of each of ``texts`` with ``encoder`` unless
    ``random_vectors`` are given. Raises ValueError (ProbeError) with a message to show."""
    poolings = list(poolings)
    named = [p for p in poolings if p != RANDOM_TOKEN]
    need_random = RANDOM_TOKEN in poolings and random_vectors is None
    if need_random and encoder is None:
        raise ValueError("The random-token reading needs the encoder and the texts.")
    # Weights: reading a random token is one forward pass over the texts; the probe, the control
    # task and the MDL probe each fit every layer x pooling cell, several times.
    plan = [("random tokens", 1.0)] * need_random + [("probe", 5.0)] + [("control task", 5.0)] * control
    plan += [("MDL probe", 5.0)] * bool(mdl and named)
    steps = Steps(progress, [name for name, _ in plan], weights=[weight for _, weight in plan])
    index = iter(range(len(steps.names)))
    if need_random:
        random_vectors = random_token_vectors(encoder, list(texts), seed=seed, progress=steps.step(next(index)))
        check_cancel(cancel, "The probe")
    budget = {} if memory_budget is None else {"memory_budget": memory_budget}
    result = run_probe(vectors, labels if isinstance(labels, str) else list(labels), poolings=poolings,
                       random_token=random_vectors if RANDOM_TOKEN in poolings else None, folds=int(folds), seed=seed,
                       label_name=label_name, progress=steps.step(next(index)), cancel=cancel, **budget)
    extras: dict[str, pd.DataFrame] = {}
    if control:
        extras["selectivity"] = run_selectivity(
            vectors, list(labels), types=word_types(texts), poolings=poolings,
            random_token=random_vectors if RANDOM_TOKEN in poolings else None, folds=int(folds), seed=seed,
            real=result, label_name=label_name, progress=steps.step(next(index)), cancel=cancel,
        )
    if mdl and named:
        extras["mdl"] = run_mdl(vectors, list(labels), poolings=named, seed=seed, progress=steps.step(next(index)),
                                cancel=cancel)
    return ProbeSuite(result, extras, random_vectors if need_random else None)
