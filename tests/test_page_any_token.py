"""The "Could any token do?" page (AppTest) and the background job runner it uses."""

from __future__ import annotations

import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_page
from ui import jobs

PAGE = "pages/4_Any_token.py"


# --- the job runner ------------------------------------------------------------------------


def _counting(n, progress, cancel, fail=None):
    for i in range(n):
        if cancel.is_set():
            raise RuntimeError("stopped")
        progress(i + 1, n, f"step {i + 1}")
        time.sleep(0.01)
    if fail is not None:
        raise fail
    return n * 2


def test_job_runs_reports_progress_and_returns():
    job = jobs.Job(fn=_counting, args=(5,), name="t").begin()
    assert job.wait(10)
    assert job.status == jobs.DONE and job.result == 10 and job.error is None
    assert job.done == job.total == 5 and job.fraction == 1.0
    assert job.finished is not None and job.elapsed >= 0


@pytest.mark.parametrize(
    "error, expected",
    [(ValueError("the label has one class"), "the label has one class"), (KeyError("x"), "KeyError: 'x'")],
)
def test_job_failure_becomes_a_message(error, expected):
    job = jobs.Job(fn=_counting, args=(2,), kwargs={"fail": error}, name="t").begin()
    assert job.wait(10)
    assert job.status == jobs.FAILED and job.error == expected and job.result is None


def test_job_cancel():
    gate = threading.Event()

    def slow(progress, cancel):
        gate.set()
        while not cancel.is_set():
            time.sleep(0.01)
        raise RuntimeError("interrupted")

    job = jobs.Job(fn=slow, name="t").begin()
    assert gate.wait(10)
    assert job.active
    job.cancel()
    assert job.wait(10)
    assert job.status == jobs.CANCELLED and job.error is None


def test_jobs_queue_behind_the_slot():
    release = threading.Event()

    def hold(progress, cancel):
        release.wait(10)
        return "first"

    first = jobs.Job(fn=hold, name="a").begin()
    second = jobs.Job(fn=lambda progress, cancel: "second", name="b").begin()
    time.sleep(0.5)
    assert first.status == jobs.RUNNING and second.status == jobs.QUEUED
    release.set()
    assert first.wait(10) and second.wait(10)
    assert (first.result, second.result) == ("first", "second")


def test_the_probe_and_its_controls_run_as_one_job_with_one_progress():
    import numpy as np

    from clsviz import Corpus, PooledVectors
    from clsviz.analyses import run
    from clsviz.experiments import run_mdl, run_probe, run_selectivity, word_types

    rng = np.random.default_rng(0)
    labels = ["a", "b"] * 20
    arrays = {p: rng.normal(size=(40, 3, 8)).astype(np.float32) + np.array([[0.0], [1.0]] * 20)[:, :, None]
              for p in ("cls", "mean")}  # fmt: skip
    texts = tuple(f"word{i % 7} and more {i}" for i in range(40))
    vectors = PooledVectors(vectors=np.stack([arrays["cls"], arrays["mean"]], axis=2), poolings=("cls", "mean"),
                            texts=texts, model_name="suite-test", truncated=np.zeros(40, dtype=bool))  # fmt: skip
    corpus = Corpus(texts=texts, labels={"y": labels})
    seen = []
    job = jobs.Job(fn=run, args=("probe", corpus, vectors), kwargs=dict(
        label_column="y", poolings="cls,mean", folds=4, control=True, mdl=True), name="suite")
    relay = job.report

    def recording(done, total=None, message=None):
        seen.append(message)
        relay(done, total, message)

    job.report = recording
    job.begin()
    assert job.wait(120) and job.status == jobs.DONE, job.error
    steps = [m for m in seen if m and ": " not in m]
    assert steps == ["step 1 of 3 (probe)", "step 2 of 3 (control task)", "step 3 of 3 (MDL probe)"]
    assert job.fraction == 1.0
    # The same numbers as each computation run on its own.
    direct = run_probe(arrays, labels, poolings=["cls", "mean"], folds=4, seed=0)
    np.testing.assert_allclose(job.result.probe.table["accuracy_mean"], direct.table["accuracy_mean"])
    control = run_selectivity(arrays, labels, types=word_types(texts), poolings=["cls", "mean"], folds=4, seed=0,
                              real=direct)
    np.testing.assert_allclose(job.result.extras["selectivity"]["selectivity"], control["selectivity"])
    mdl = run_mdl(arrays, labels, poolings=["cls", "mean"], seed=0)
    np.testing.assert_allclose(job.result.extras["mdl"]["codelength_bits"], mdl["codelength_bits"])


# --- the page -------------------------------------------------------------------------------


def _open(**state) -> AppTest:
    # The page runs inside the app (entry file app.py), as it does in the browser.
    return open_page(PAGE, timeout=180, **state)


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def _run_probe(at) -> None:
    """Press Run the probe and wait for its background job, then draw the page with its result."""
    _button(at, "Run the probe").click()
    at.run()
    assert not at.exception, at.exception
    held = at.session_state["clsviz.jobs"] if "clsviz.jobs" in at.session_state else {}
    job = held.get("analysis.any_token.probe")  # the runner's job for the page's probe slot
    if job is not None:  # None when the page refused to start it (its message is on the page)
        assert job.wait(300), job.message
        at.run()


def test_page_loads_with_the_demo_corpus():
    at = _open()
    assert at.title[0].value == "Could any token do?"
    assert [s.value for s in at.selectbox if s.label == "Label to predict"][0] == "topic"
    assert any("Run the probe" in i.value for i in at.info)


def test_probe_runs_on_a_small_subset():
    at = _open()
    next(s for s in at.selectbox if s.label == "Label to predict").set_value("sentiment")
    next(n for n in at.number_input if n.label == "Texts to use").set_value(40)
    next(s for s in at.slider if s.label == "Folds").set_value(4)
    at.run()
    _run_probe(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    params, result, _ = at.session_state["any_token.result"]
    assert result.n == 40 and result.folds == 4 and result.label == "sentiment"
    assert set(result.classes) == {"positive", "negative"}
    table = result.table
    assert table["layer"].nunique() == 7
    assert "random" in set(table["pooling"]) and "cls" in set(table["pooling"])
    assert any(result.summary() in i.value.replace("\\", "") for i in at.info)
    assert len(at.get("plotly_chart")) == 1
    assert any("stratified sample of 40" in c.value for c in at.caption)


def test_single_class_subset_is_a_message_not_a_crash():
    at = _open()
    next(n for n in at.number_input if n.label == "Texts to use").set_value(20)
    next(s for s in at.slider if s.label == "Folds").set_value(10)
    at.run()
    _run_probe(at)
    assert not at.exception
    assert any("fewer examples than the 10 folds" in e.value for e in at.error)


def test_fine_tuning_moved_to_its_own_page():
    at = _open()
    assert not any(b.label == "Start fine-tuning" for b in at.button)
    assert any("lives on its own page" in c.value for c in at.caption)


def test_control_task_and_mdl_next_to_the_probe():
    import numpy as np

    at = _open()
    next(s for s in at.selectbox if s.label == "Label to predict").set_value("sentiment")
    next(n for n in at.number_input if n.label == "Texts to use").set_value(60)
    next(s for s in at.slider if s.label == "Folds").set_value(4)
    next(m for m in at.multiselect if m.label == "Poolings").set_value(["cls", "mean"])
    next(c for c in at.checkbox if c.label == "Control task (selectivity)").check()
    next(c for c in at.checkbox if c.label == "MDL probe (codelength)").check()
    at.run()
    _run_probe(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    _, result, extras = at.session_state["any_token.result"]
    sel, mdl = extras["selectivity"], extras["mdl"]
    assert len(sel) == len(result.table) == len(mdl) == 2 * 7
    merged = result.table.merge(sel, on=["layer", "pooling"])
    np.testing.assert_allclose(merged["accuracy_mean"], merged["accuracy"])  # the probe was reused, not rerun
    np.testing.assert_allclose(sel["selectivity"], sel["accuracy"] - sel["control_accuracy"])
    assert len(at.get("plotly_chart")) == 3  # probe, selectivity, MDL
    assert any("Selectivity is highest" in i.value for i in at.info)


def test_a_result_is_cleared_when_the_corpus_changes():
    at = _open()
    next(s for s in at.selectbox if s.label == "Label to predict").set_value("sentiment")
    next(n for n in at.number_input if n.label == "Texts to use").set_value(40)
    next(s for s in at.slider if s.label == "Folds").set_value(4)
    at.run()
    _run_probe(at)
    assert any("Predicting 'sentiment'" in i.value for i in at.info)
    # Another corpus: an upload with its own label column.
    rows = [f"sentence {i} about {'rain' if i % 2 else 'sun'},{'wet' if i % 2 else 'dry'}" for i in range(40)]
    data = ("text,weather\n" + "\n".join(rows) + "\n").encode()
    at.radio(key="any_token.corpus.source").set_value("Upload a file").run()
    at.file_uploader(key="any_token.corpus.file").set_value(("weather.csv", data, "text/csv")).run()
    assert not at.exception, at.exception
    assert not any("Predicting 'sentiment'" in i.value for i in at.info)
    assert any("result was cleared" in i.value for i in at.info)
    assert "any_token.result" not in at.session_state
    assert not at.get("plotly_chart")
