"""The "Could any token do?" page's Streamlit side: the poolings offered, the probe's inputs made
when a person asks for it (the labelled texts, a stratified sample, their vectors), and the
result drawn. The probe, the control task and the MDL probe are one long analysis
(``probe`` in :mod:`clsviz.analyses.probing`) that :mod:`ui.runner` runs as one background job.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from clsviz import Corpus, Encoder
from clsviz.analyses.probing import labelled_rows, probe_subset
from clsviz.experiments import RANDOM_TOKEN, ProbeError, default_poolings
from clsviz.pooling import POOLING_HELP

from . import runner
from .corpus import corpus_vectors
from .text import plain

__all__ = ["HELP", "labelled_count", "offered_poolings", "probe_inputs", "show_result"]

HELP = {**POOLING_HELP, RANDOM_TOKEN: "one content token per text, picked at random (seeded by the text)"}
"""What each pooling offered reads (``token:K`` under that name)."""


def offered_poolings(encoder: Encoder, saved, token_k: int) -> list[str]:
    """The poolings to offer: the default grid for the model (``token:K`` with this K), or the
    poolings saved vectors hold."""
    available = default_poolings(encoder.info.has_pooler) if saved is None else list(saved.poolings)
    return [f"token:{int(token_k)}" if s.startswith("token:") else s for s in available]


def pooling_help(options: Sequence[str]) -> str:
    return "\n".join(f"- **{s}**: {HELP.get(s if not s.startswith('token:') else 'token:K', '')}" for s in options)


def labelled_count(corpus: Corpus, label: str) -> int:
    """How many texts have a value in ``label``."""
    return len(labelled_rows(corpus, label))


def probe_inputs(encoder: Encoder, corpus: Corpus, saved, label: str, poolings: Sequence[str], max_texts: int,
                 folds: int, seed: int) -> tuple[tuple, str | None] | None:  # fmt: skip
    """The probe's inputs (corpus, vectors, encoder) and the note to show when a sample is used:
    saved vectors as they are, else the labelled texts (sampled down to ``max_texts``) embedded
    once per model and poolings. None after a message when the labels cannot be probed or
    embedding failed."""
    if saved is not None:
        return (corpus, saved, None), None
    try:
        sub, note = probe_subset(corpus, label, int(max_texts), int(folds), seed)
    except ProbeError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return None
    named = tuple(s for s in poolings if s != RANDOM_TOKEN)
    # The random tokens come from the same pass as the named poolings: the probe then runs no second pass.
    vectors = corpus_vectors(encoder, sub, named, random_token_seed=seed if RANDOM_TOKEN in poolings else None) \
        if named else None
    if named and vectors is None:
        return None
    return (sub, vectors, encoder if RANDOM_TOKEN in poolings else None), note


def show_result(result, baseline, note: str | None) -> None:
    """The probe's notes, its summary with the spread over folds, its figure and numbers, and the
    control task and the MDL probe when they were asked for."""
    probe = result.probe
    for line in (*probe.messages, *([note] if note else [])):
        st.caption(plain(line))
    st.info(plain(result.probe_sentences(baseline)), icon=":material/lightbulb:")
    runner.draw(result, "probe.accuracy", chart_key="any_token.probe_figure")
    st.caption(f"Probed in {probe.seconds:.1f} s.")
    with st.expander("The numbers"):
        st.dataframe(result.table(), hide_index=True, width="stretch")
    runner.download_table(result, "probe_accuracy.csv", csv_key="any_token.csv")
    if result.selectivity is not None:
        st.info(plain(result.selectivity_sentence() or ""), icon=":material/rule:")
        runner.draw(result, "probe.selectivity", chart_key="any_token.selectivity", csv="probe_selectivity.csv",
                    csv_key="any_token.selectivity_csv")  # fmt: skip
    if result.mdl is not None:
        mdl = result.mdl_sentence()
        if mdl:
            st.caption(plain(mdl))
        runner.draw(result, "probe.mdl", chart_key="any_token.mdl_figure", csv="probe_mdl.csv", csv_key="any_token.mdl_csv")
