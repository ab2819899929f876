"""The Published findings page (AppTest): the check runs as a background job (the ``findings``
analysis through ui.runner), the table and one sentence per finding are drawn as text with each
interval and caveat, results of other pages are shown beside the rows (never used for a verdict),
bad input is refused."""

from __future__ import annotations

import pandas as pd
import pytest

from clsviz.experiments.probe import ProbeResult
from clsviz.literature import COLUMNS, VERDICTS, load_claims
from tests.conftest import open_page
from ui import jobs
from ui.literature import JOB
from ui.state import OTHER
from ui.text import plain

PAGE = "pages/12_Findings.py"
BUTTON = "Check the findings on this model"


def _open(folder, **state):
    return open_page(PAGE, **{"clsviz.model": OTHER, "clsviz.custom_model": str(folder), **state})


def _check(at):
    next(b for b in at.button if b.label == BUTTON).click()
    at.run()
    assert not at.exception, at.exception
    job = at.session_state["clsviz.jobs"].get(JOB)
    if job is not None:
        assert job.wait(600)
        assert job.status == jobs.DONE, job.error
        at.run()
        assert not at.exception, at.exception
    return at


def _tables(at) -> list[pd.DataFrame]:
    """The findings tables the page drew (the pickers may draw previews of their own)."""
    return [d.value for d in at.dataframe if "verdict" in d.value.columns]


def _saved(at) -> pd.DataFrame:
    """The whole table the check produced (the job's result)."""
    return at.session_state["clsviz.jobs"][JOB].result.table()


def _markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def _captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


@pytest.fixture(scope="module")
def checked(tiny_model_dirs):
    """The page after a check on the tiny BERT."""
    return _check(_open(tiny_model_dirs["bert"]))


def test_the_page_offers_the_check_and_lists_the_claims(tiny_model_dirs):
    at = _open(tiny_model_dirs["bert"])
    assert any(b.label == BUTTON for b in at.button)
    assert not _tables(at)
    text = _markdown(at)
    assert all(c.source.replace("&", "\\&") in text or c.source in text for c in load_claims())


def test_a_check_draws_the_table_and_a_sentence_per_finding(checked):
    at = checked
    assert len(_tables(at)) == 1
    shown = _tables(at)[0]
    assert list(shown["source"]) == [c.source for c in load_claims()]
    assert set(shown["verdict"]) <= set(VERDICTS)
    # The key columns only, narrow enough to read without scrolling sideways; the rest below.
    assert list(shown.columns) == ["source", "verdict", "interval", "threshold", "sample"]
    saved = _saved(at)
    assert list(saved.columns) == list(COLUMNS)
    for row in shown.itertuples():
        assert row.interval == "–" or "–" in row.interval
    info = at.info[0].value
    assert info.startswith(f"{len(load_claims())} findings on ")
    text = _markdown(at)
    for row in saved.itertuples():  # one plain sentence per row, and its source linked
        assert row.verdict in text
        assert f"]({row.url})" in text
    captions = _captions(at)
    assert sum(plain(f"Caveat: {row.caveat}")[:60] in captions for row in saved.itertuples() if row.caveat) >= 3
    assert any(b.label == "Download the table (CSV)" for b in at.get("download_button"))
    assert not any(b.label == BUTTON for b in at.button)  # the result is there: no button


def test_the_result_is_kept_for_the_same_inputs_across_reruns(checked, tiny_model_dirs):
    # A new session on the same model and data gets the table from the shared cache at once.
    at = _open(tiny_model_dirs["bert"])
    assert len(_tables(at)) == 1
    assert not any(b.label == BUTTON for b in at.button)


def test_results_of_other_pages_are_shown_as_text(checked):
    at = checked
    probe = ProbeResult(
        table=pd.DataFrame({"layer": [0, 1, 2], "pooling": "cls", "accuracy_mean": [0.4, 0.7, 0.9],
                            "accuracy_sd": 0.0, "n": 40, "folds": 5}),
        label="**bold** <b>tag</b>", classes=("a", "b"), class_counts=(20, 20), chance=0.5, majority=0.5, n=40,
        folds=5, model_name=at.session_state["clsviz.custom_model"],
    )  # fmt: skip
    at.session_state["any_token.result"] = ((), probe)
    at.run()
    assert not at.exception, at.exception
    said = [c for c in at.caption if "Elsewhere in this session" in c.value]
    assert len(said) == 1
    # The label a person typed stays text: its markdown is escaped, not rendered.
    assert "\\*\\*bold\\*\\*" in said[0].value and "layer 2" in said[0].value


def test_a_too_small_corpus_is_refused_with_a_message(tiny_model_dirs, monkeypatch):
    import ui.corpus
    from clsviz import Corpus

    small = Corpus(texts=tuple(f"Sentence {i}." for i in range(5)), name="five.txt")
    monkeypatch.setattr(ui.corpus, "_upload", lambda key: small)
    at = _open(tiny_model_dirs["bert"], **{"findings.corpus.source": "Upload a CSV / TXT"})
    at.radio(key="findings.corpus.source").set_value(at.radio(key="findings.corpus.source").options[1]).run()
    assert not at.exception, at.exception
    assert any("the checks need at least 20" in e.value for e in at.error)
    assert not any(b.label == BUTTON for b in at.button)


def test_a_failed_check_says_why_and_offers_the_button_again(tiny_model_dirs, monkeypatch):
    import clsviz.analyses.findings

    def broken(*args, **kwargs):
        raise ValueError("the model ran out of layers")

    monkeypatch.setattr(clsviz.analyses.findings, "check_claims", broken)
    at = _open(tiny_model_dirs["roberta"])
    next(b for b in at.button if b.label == BUTTON).click()
    at.run()
    job = at.session_state["clsviz.jobs"].get(JOB)
    assert job.wait(60)
    at.run()
    assert not at.exception, at.exception
    assert any("the model ran out of layers" in e.value for e in at.error)
    assert any(b.label == BUTTON for b in at.button)


def test_a_running_check_shows_its_progress_and_can_be_cancelled(tiny_model_dirs, monkeypatch):
    import threading

    import clsviz.analyses.findings

    started = threading.Event()

    def slow(encoder, progress, cancel, **kwargs):
        progress(3, 10, "Checking Clark et al. 2019")
        started.set()
        cancel.wait(60)
        raise RuntimeError("stopped")

    monkeypatch.setattr(clsviz.analyses.findings, "check_claims", slow)
    at = _open(tiny_model_dirs["electra"])
    next(b for b in at.button if b.label == BUTTON).click()
    at.run()
    assert started.wait(60)
    at.run()
    assert not at.exception, at.exception
    assert all(b.disabled for b in at.button if b.label == BUTTON)  # one check at a time
    bars = [p for p in at.get("progress")]
    assert bars and "Checking Clark et al. 2019" in bars[0].proto.text
    assert any(b.label == "Cancel" for b in at.button)
    job = at.session_state["clsviz.jobs"][JOB]
    job.cancel()
    assert job.wait(60)
    at.run()
    assert any("was cancelled" in w.value for w in at.warning)
    assert any(b.label == BUTTON for b in at.button)
