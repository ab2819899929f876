"""Streamlit helpers of the "Causal tests" page: the per-sentence runs (cached), the corpus
runs as background jobs, and one way to show any result (finding, figure, CSV)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from clsviz import Corpus, Encoder, figures
from clsviz.corpus import is_missing, stratified_rows
from clsviz.experiments import interventions as iv
from ui import jobs
from ui.cache import cached
from ui.text import plain
from ui.widgets import download_csv, show

__all__ = [
    "CORPUS_RUNS",
    "QUESTIONS",
    "corpus_rows",
    "job_key",
    "sentence_run",
    "show_result",
    "start_corpus_run",
]

QUESTIONS = {
    "knockout": "Does [CLS] need to read the words, and from which block on?",
    "patching": "Where does the sentence live in [CLS], and when is it too late to change the outcome?",
    "heads": "Which heads matter for [CLS], and which only park attention on it?",
    "massive": "The sink's massive dimensions: what if they are zeroed, or set to their mean?",
    "registers": "Registers: do extra tokens after [CLS] take over the sink?",
}
CORPUS_RUNS = {
    "knockout": iv.knockout_sweep,
    "patching": iv.patching_sweep,
    "heads": iv.head_sweep,
    "massive": iv.massive_sweep,
    "registers": iv.register_sweep,
}
FIGURES = {
    "knockout": ("interventions.knockout", lambda r: figures.knockout_figure(r.table)),
    "patching": ("interventions.patching", lambda r: figures.patching_figure(r.table)),
    "heads": ("interventions.heads", lambda r: figures.head_ablation_figure(r.table)),
    "massive": ("interventions.massive", lambda r: figures.massive_figure(r.table, r.attention)),
    "registers": ("interventions.registers", lambda r: figures.registers_figure(r.table, r.attention)),
}


RUNNING = {
    "knockout": "Cutting [CLS]'s reads block by block",
    "patch_profile": "Patching [CLS] at each layer",
    "heads": "Ablating each head",
    "massive": "Setting the massive dimensions",
    "registers": "Running with registers",
}


def _under_bar(what: str, run: Callable[[Callable], object]) -> Callable[[], object]:
    """``run(progress)`` as a computation that shows a progress bar while it runs (then removes it)."""

    def compute():
        bar = st.progress(0.0, text=plain(f"{what}…"))

        def progress(done: int, total: int, message: str = "") -> None:
            bar.progress(min(1.0, done / max(total, 1)), text=plain(f"{what}: {message}" if message else f"{what}…"))

        try:
            return run(progress)
        finally:
            bar.empty()

    return compute


def _demo_head_means(encoder: Encoder):
    return cached("causal.head_means", (encoder.name, iv.MEAN_SAMPLE), _under_bar(
        "Averaging each head's output over demo sentences", lambda p: iv.head_means(encoder, iv.demo_sample(), progress=p)))  # fmt: skip


def _massive(encoder: Encoder, text: str, max_tokens: int, layer: int, progress):
    dims = tuple(iv.find_massive_dimensions(encoder, [text], layer)["dimension"].tolist())
    means = cached("causal.dimension_means", (encoder.name, iv.MEAN_SAMPLE, dims, layer),
                   lambda: iv.dimension_means(encoder, iv.demo_sample(), dims, layer))  # fmt: skip
    return iv.massive_sweep(encoder, [text], layer=layer, dims=list(dims), mean_from=means, max_length=max_tokens,
                            progress=progress)  # fmt: skip


def sentence_run(kind: str, encoder: Encoder, text: str, max_tokens: int, **options):
    """A causal test on one sentence (no labels), cached per (model, text, tokens, options),
    with a progress bar while it runs. Head and dimension means come from a sample of the demo corpus."""
    runs = {
        "knockout": lambda p: iv.knockout_sweep(encoder, [text], max_length=max_tokens, progress=p),
        "patch_profile": lambda p: iv.patch_profile(encoder, options["source"], text, max_length=max_tokens),
        "heads": lambda p: iv.head_sweep(
            encoder, [text], mode=options["mode"], max_length=max_tokens, progress=p,
            mean_from=_demo_head_means(encoder) if options["mode"] == "mean" else None,
        ),  # fmt: skip
        "massive": lambda p: _massive(encoder, text, max_tokens, int(options["layer"]), p),
        "registers": lambda p: iv.register_sweep(encoder, [text], ks=range(int(options["k"]) + 1), max_length=max_tokens,
                                                 progress=p),  # fmt: skip
    }
    if kind == "registers":  # one sentence is never cut to make room: say so instead
        iv.check_register_room(encoder, max_tokens, int(options["k"]))
    key = (kind, encoder.name, text, int(max_tokens), tuple(sorted(options.items())))
    return cached("causal.sentence", key, _under_bar(RUNNING[kind], runs[kind]))


def show_result(kind: str, result, key: str) -> None:
    """One result: its notes, the plain sentence of what this model does, the figure, the CSV."""
    for note in result.messages:
        st.caption(plain(note))
    st.info(plain(result.finding), icon=":material/lightbulb:")
    figure_key, draw = FIGURES[kind]
    note = f"Rule: {iv.HEAD_ROLE_RULE}" if kind == "heads" else None
    show(figure_key, draw(result), key=f"{key}.figure", note=note)
    left, right = st.columns(2)
    with left:
        download_csv(result.table, f"causal_{kind}.csv", key=f"{key}.csv")
    if result.attention is not None:
        with right:
            download_csv(result.attention, f"causal_{kind}_attention.csv", key=f"{key}.attention_csv",
                         label="Download where the attention goes (CSV)")  # fmt: skip


def corpus_rows(corpus: Corpus, label: str | None, n: int, seed: int = 0) -> list[int]:
    """At most ``n`` rows: with a label, the labelled rows (a stratified sample when fewer than
    all); without one, the first ``n`` texts."""
    if label is None:
        return list(range(min(n, len(corpus))))
    rows = [i for i, v in enumerate(corpus.labels[label]) if not is_missing(v)]
    if len(rows) <= n:
        return rows
    picked = stratified_rows([corpus.labels[label][i] for i in rows], n, seed=seed)
    return [rows[i] for i in picked]


def job_key(kind: str) -> str:
    return f"causal.{kind}"


def start_corpus_run(kind: str, encoder: Encoder, corpus: Corpus, label: str | None, rows: list[int], **options):
    """Start the corpus run ``kind`` in the background (one job per kind and session); None when
    the session is at its job limit (said on the page)."""
    texts = [corpus.texts[i] for i in rows]
    labels = None if label is None else [corpus.labels[label][i] for i in rows]
    return jobs.launch(job_key(kind), CORPUS_RUNS[kind], encoder, texts, labels, label_name=label or "label", **options)
