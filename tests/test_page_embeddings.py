"""AppTest for the Embeddings page: the demo corpus and an uploaded CSV, on the tiny random BERT
(the page's numbers do not need real weights; the real model is covered by clsviz tests)."""

from __future__ import annotations

import csv
import io
import json
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import streamlit as st
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from streamlit.testing.v1 import AppTest

from clsviz import extract, pool, trace
from clsviz.corpus import demo_corpus
from clsviz.projection import Projector
from tests.test_attention import _arr
from ui.corpus import UPLOAD
from ui.state import DEFAULT_MAX_TOKENS, OTHER

PAGE = "pages/3_Embeddings.py"
SENTENCES = "The film was <b>not</b> bad at all.\nThe cat chased the dog."
SEED = 42


@pytest.fixture(scope="module", autouse=True)
def _no_warmup():
    # The page starts a background UMAP warm-up; tests compile UMAP in the foreground anyway.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLSVIZ_UMAP_WARMUP", "0")
        yield


class _Upload:
    def __init__(self, name: str, data: bytes):
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


@contextmanager
def _uploading(upload: tuple[str, bytes] | None):
    """AppTest cannot upload files: the uploader is wrapped to hand back these bytes."""
    real = st.file_uploader

    def uploader(*args, **kwargs):
        real(*args, **kwargs)
        return _Upload(*upload) if upload else None

    with mock.patch.object(st, "file_uploader", uploader):
        yield


def _open(model_dir, upload=None, **state) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=240)
    at.session_state["clsviz.model"] = OTHER
    at.session_state["clsviz.custom_model"] = str(model_dir)
    at.session_state["clsviz.sentences"] = SENTENCES
    for k, v in state.items():
        at.session_state[k] = v
    at.switch_page(PAGE)
    with _uploading(upload):
        at.run()
    assert not at.exception, at.exception
    return at


def _specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _panel_points(spec: dict, axis: str) -> np.ndarray:
    """Corpus points of one panel (``"x"``, ``"x2"``, ...), sorted for comparison."""
    traces = [t for t in spec["data"] if t.get("xaxis", "x") == axis and t["name"] != "your sentences"]
    xy = np.c_[np.concatenate([_arr(t["x"]) for t in traces]), np.concatenate([_arr(t["y"]) for t in traces])]
    return xy[np.lexsort(xy.T[::-1])]


def _sorted_rounded(xy: np.ndarray) -> np.ndarray:
    xy = np.round(np.asarray(xy, dtype=np.float32), 4)
    return xy[np.lexsort(xy.T[::-1])]


@pytest.fixture(scope="module")
def demo_vectors(tiny_encoder):
    return extract(tiny_encoder, demo_corpus().texts, ("cls", "mean", "max"))


@pytest.fixture(scope="module")
def demo_page(tiny_model_dirs) -> AppTest:
    return _open(tiny_model_dirs["bert"])


def test_demo_corpus_shows_umap_panels_scores_and_typed_sentences(demo_page, demo_vectors, tiny_encoder):
    at = demo_page
    assert not at.error
    specs = _specs(at)
    assert len(specs) == 3  # panels (UMAP replaced the preview), scores across layers, trajectory
    panels = specs[0]
    layer = tiny_encoder.info.num_layers
    assert f"UMAP of {len(demo_corpus()):,} texts after layer {layer}" in panels["layout"]["title"]["text"]
    # The [CLS] panel is exactly the seeded UMAP of the [CLS] vectors, recomputed here.
    cls = demo_vectors.get("cls", layer)
    expected = Projector("umap", random_state=SEED).fit(cls)
    np.testing.assert_allclose(_panel_points(panels, "x"), _sorted_rounded(expected.embedding_), atol=2e-3)
    # Typed sentences are stars placed with transform, hover text escaped.
    stars = [t for t in panels["data"] if t["name"] == "your sentences"]
    assert len(stars) == 3 and list(stars[0]["text"]) == ["1", "2"]
    assert "&lt;b&gt;not&lt;/b&gt;" in stars[0]["hovertext"][0]
    mine = np.stack(
        [
            pool(trace(tiny_encoder, s, max_tokens=DEFAULT_MAX_TOKENS), "cls", layer)
            for s in SENTENCES.splitlines()
        ]
    )
    np.testing.assert_allclose(
        np.c_[_arr(stars[0]["x"]), _arr(stars[0]["y"])], expected.transform(mine), atol=2e-3
    )
    # Scores beside the panels equal scikit-learn's, computed on the same vectors.
    topic = np.array(demo_corpus().labels["topic"])
    knn = cross_val_score(
        KNeighborsClassifier(5, metric="cosine", algorithm="brute"),
        cls.astype(np.float64),
        topic,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
    ).mean()
    metrics = {m.label: m.value for m in at.metric}
    assert len(metrics) == 6
    assert metrics["[CLS] · kNN accuracy"] == f"{knn:.3f}"
    assert metrics["[CLS] · silhouette"] == f"{silhouette_score(cls, topic, metric='cosine'):.3f}"
    scores = specs[1]
    assert [t["name"] for t in scores["data"][:3]] == ["[CLS]", "mean of all tokens", "max over tokens"]
    assert len(_arr(scores["data"][0]["x"])) == layer + 1
    trajectory = [t for t in specs[2]["data"] if t["name"] == "your sentence"]
    assert len(trajectory) == 3 and list(trajectory[0]["text"]) == [str(k) for k in range(layer + 1)]
    assert len(at.get("download_button")) == 2


def test_controls_change_layer_third_panel_and_label(demo_page):
    at = demo_page
    at.radio(key="embeddings.method").set_value("PCA").run()
    at.slider(key="embeddings.layer").set_value(0).run()
    assert not at.exception
    assert "PCA of 896 texts after layer 0" in _specs(at)[0]["layout"]["title"]["text"]
    at.selectbox(key="embeddings.third").set_value("token:K").run()
    at.number_input(key="embeddings.k").set_value(2).run()
    assert not at.exception
    titles = [a["text"] for a in _specs(at)[0]["layout"]["annotations"]]
    assert any(t.startswith("token 2") for t in titles)
    assert "token 2 · kNN accuracy" in [m.label for m in at.metric]
    at.selectbox(key="embeddings.label").set_value("(no colour)").run()
    assert not at.exception
    assert not at.metric
    assert any("Pick a label column" in i.value for i in at.info)
    assert len(_specs(at)) == 2  # panels and trajectory; no scores without a label


def test_pooler_is_offered_only_for_models_with_one(tiny_model_dirs, demo_page):
    assert "pooler (dense + tanh on [CLS])" in demo_page.selectbox(key="embeddings.third").options
    at = _open(tiny_model_dirs["roberta"], **{"embeddings.method": "PCA"})
    options = at.selectbox(key="embeddings.third").options
    assert "pooler (dense + tanh on [CLS])" not in options and "max over tokens" in options


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


UPLOADED = [["review", "mood"]] + [
    [
        f"Review {i}: the {'room' if i % 2 else 'view'} was {'<i>lovely</i>' if i % 2 else 'dull'} today.",
        "good" if i % 2 else "bad",
    ]
    for i in range(40)
]


def test_uploaded_csv_is_projected_and_scored(tiny_model_dirs, tiny_encoder):
    upload = ("reviews.csv", _csv(UPLOADED))
    at = _open(
        tiny_model_dirs["bert"],
        upload,
        **{"embeddings.corpus.source": UPLOAD, "embeddings.method": "PCA"},
    )
    assert not at.error
    panels = _specs(at)[0]
    assert "PCA of 40 texts" in panels["layout"]["title"]["text"]
    texts = [r[0] for r in UPLOADED[1:]]
    layer = tiny_encoder.info.num_layers
    cls = extract(tiny_encoder, texts, ("cls",)).get("cls", layer).astype(np.float64)
    # PCA of the [CLS] vectors (cosine: unit rows), recomputed with numpy's SVD.
    unit = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    centred = unit - unit.mean(0)
    expected = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    got = _panel_points(panels, "x")
    for signs in ([1, 1], [1, -1], [-1, 1], [-1, -1]):
        if np.allclose(got, _sorted_rounded(expected * signs), atol=2e-3):
            break
    else:
        pytest.fail("the [CLS] panel is not the PCA of the [CLS] vectors")
    hover = [h for t in panels["data"] if t["name"] in ("good", "bad") for h in t["hovertext"]]
    assert any("&lt;i&gt;lovely&lt;/i&gt;" in h for h in hover) and not any("<i>lovely" in h for h in hover)
    assert {m.label for m in at.metric} >= {"[CLS] · kNN accuracy", "mean of all tokens · silhouette"}
    # UMAP on the upload replaces the PCA picture.
    with _uploading(upload):
        at.radio(key="embeddings.method").set_value("UMAP").run()
    assert not at.exception
    assert "UMAP of 40 texts" in _specs(at)[0]["layout"]["title"]["text"]


def test_too_small_an_upload_gets_a_message(tiny_model_dirs):
    upload = ("tiny.txt", b"one sentence\nanother sentence\na third\n")
    at = _open(tiny_model_dirs["bert"], upload, **{"embeddings.corpus.source": UPLOAD})
    assert any("needs at least 5" in w.value for w in at.warning)
    assert not at.get("plotly_chart")


def test_umap_warm_up_starts_once_per_process_in_the_background(monkeypatch):
    import threading

    import ui.embeddings as ui_embeddings

    started, release = threading.Event(), threading.Event()
    calls = []

    def fake_warm_up():
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(10)

    monkeypatch.setattr(ui_embeddings, "warm_up", fake_warm_up)
    monkeypatch.setattr(ui_embeddings, "_warm_thread", None)
    assert ui_embeddings.start_umap_warmup() is False  # CLSVIZ_UMAP_WARMUP=0 here
    assert ui_embeddings._warm_thread is None
    monkeypatch.setenv("CLSVIZ_UMAP_WARMUP", "1")
    assert ui_embeddings.start_umap_warmup() is True
    assert started.wait(10) and ui_embeddings.warmup_running()
    assert ui_embeddings.start_umap_warmup() is False  # already started in this process
    release.set()
    ui_embeddings._warm_thread.join(10)
    assert not ui_embeddings.warmup_running()
    assert calls == ["clsviz-umap-warmup"]


def test_a_umap_failure_falls_back_to_pca_with_a_message(tiny_model_dirs):
    import clsviz.analyses.embeddings as projections  # where the page's projections are fit

    real = projections.Projector

    def failing(method, **kwargs):
        if method == "umap":
            raise RuntimeError("numba could not compile")
        return real(method, **kwargs)

    rows = [["text", "kind"]] + [[f"Fallback sentence number {i} about {'tea' if i % 2 else 'rain'}.", str(i % 2)]
                                 for i in range(24)]
    with mock.patch.object(projections, "Projector", failing):
        at = _open(tiny_model_dirs["bert"], ("fallback.csv", _csv(rows)), **{"embeddings.corpus.source": UPLOAD})
    shown = [w.value.replace("\\", "") for w in at.warning]  # Markdown escapes removed
    assert "UMAP failed (RuntimeError: numba could not compile); showing PCA." in shown
    assert "PCA of 24 texts" in _specs(at)[0]["layout"]["title"]["text"]


@pytest.fixture(scope="module")
def saved_vectors(tiny_encoder):
    """30 demo sentences embedded as `clsviz embed` would, with a 'first' reading besides cls/mean."""
    demo = demo_corpus()
    rows = list(range(0, len(demo), len(demo) // 30))[:30]
    texts = [demo.texts[i] for i in rows]
    labels = {"topic": [demo.labels["topic"][i] for i in rows]}
    return extract(tiny_encoder, texts, ("cls", "mean", "first"), labels=labels)


def _open_saved(model_dir, pv, tmp_path, name="vectors.npz") -> AppTest:
    from clsviz.vectors_io import save_vectors
    from ui.embeddings import SAVED

    at = _open(model_dir, **{"embeddings.corpus.source": SAVED, "embeddings.method": "PCA"})
    assert any("clsviz embed" in i.value for i in at.info) and not at.get("plotly_chart")
    data = save_vectors(pv, tmp_path / name).read_bytes()
    # Any embedding here would be a failure: saved vectors are shown as they are.
    with mock.patch("ui.corpus.extract", side_effect=AssertionError("the corpus was embedded again")):
        at.file_uploader(key="embeddings.corpus.vectors").set_value(
            (name, data, "application/octet-stream")
        ).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("name", ["vectors.npz", "vectors.parquet"])
def test_saved_vectors_are_shown_without_embedding_again(tiny_model_dirs, saved_vectors, tmp_path, name):
    import html

    at = _open_saved(tiny_model_dirs["bert"], saved_vectors, tmp_path, name)
    assert not at.error and not at.warning
    # Only the readings the file holds are offered for the third panel.
    from clsviz.figures import pooling_title

    assert at.selectbox(key="embeddings.third_saved").options == [pooling_title("first")]
    panels = _specs(at)[0]
    layer = saved_vectors.num_layers
    assert f"PCA of 30 texts after layer {layer}" in panels["layout"]["title"]["text"]
    # Every saved text is a point, and the [CLS] panel is the PCA of the file's [CLS] vectors.
    hover = " ".join(h for t in panels["data"] if t["name"] != "your sentences" for h in t["hovertext"])
    hover = hover.replace("<br>", " ")  # long sentences are wrapped
    assert all(html.escape(" ".join(text.split()), quote=False) in hover for text in saved_vectors.texts)
    cls = saved_vectors.get("cls", layer).astype(np.float64)
    unit = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    centred = unit - unit.mean(0)
    expected = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    got = _panel_points(panels, "x")
    assert any(
        np.allclose(got, _sorted_rounded(expected * signs), atol=2e-3)
        for signs in ([1, 1], [1, -1], [-1, 1], [-1, -1])
    )
    # Same model: the typed sentences are placed among the saved ones.
    stars = [t for t in panels["data"] if t["name"] == "your sentences"]
    assert len(stars) == 3 and list(stars[0]["text"]) == ["1", "2"]
    assert f"{pooling_title('first')} · kNN accuracy" in [m.label for m in at.metric]


def test_saved_vectors_from_another_model_or_without_mean(
    tiny_model_dirs, saved_vectors, tiny_encoder, tmp_path
):
    from dataclasses import replace

    other = replace(saved_vectors, model_name="someone/other-model")
    at = _open_saved(tiny_model_dirs["bert"], other, tmp_path)
    assert any("someone/other-model" in w.value and "not placed" in w.value for w in at.warning)
    panels = _specs(at)[0]
    assert "PCA of 30 texts" in panels["layout"]["title"]["text"]
    assert not [t for t in panels["data"] if t["name"] == "your sentences"]
    only_cls = extract(tiny_encoder, saved_vectors.texts, ("cls",))
    at = _open_saved(tiny_model_dirs["bert"], only_cls, tmp_path, "cls-only.npz")
    assert any("need mean" in e.value.replace("\\", "") for e in at.error)
    assert not at.get("plotly_chart")


def _clustered(n: int = 80, d: int = 16) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.normal(size=(4, d))[rng.integers(0, 4, n)] + 0.2 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture
def worker_jobs(monkeypatch):
    """Jobs in a worker process, on a scheduler of their own (one slot)."""
    from ui import engine

    monkeypatch.setenv("CLSVIZ_JOB_PROCESS", "1")
    monkeypatch.setattr(engine, "_scheduler", engine.Scheduler(1))
    return engine


def _vectors(X: np.ndarray):
    from clsviz import Corpus, PooledVectors

    texts = tuple(f"text {i}" for i in range(len(X)))
    stack = np.stack([X, X[:, ::-1].copy(), X * 2.0], axis=1)[:, None]  # [N, 1 layer, 3 poolings, D]
    return PooledVectors(
        vectors=stack,
        texts=texts,
        poolings=("cls", "mean", "max"),
        model_name="parallel-test",
        truncated=np.zeros(len(X), dtype=bool),
    ), Corpus(texts=texts)


def test_the_other_panels_are_fit_in_the_worker_with_the_same_numbers(worker_jobs):
    import ui.embeddings as E

    vectors, corpus = _vectors(_clustered())
    sources = dict.fromkeys(("cls", "mean", "max"), vectors)
    jobs = E.prefetch(corpus, sources, 0, "umap", SEED)
    assert len(jobs) == 2  # the first panel is left to the page
    fitted = E.projections(corpus, sources, 0, "umap", SEED)
    assert [j.status for j in jobs] == ["done", "done"] and all(j.mode == "process" for j in jobs)
    for p in ("mean", "max"):  # what the worker fit is what this process would have
        here = Projector("umap", random_state=SEED).fit(vectors.get(p, 0))
        np.testing.assert_allclose(fitted[p].coordinates(p), here.embedding_, atol=1e-5)
    assert E.prefetch(corpus, sources, 0, "umap", SEED) == []  # cached


def test_a_fit_still_queued_behind_another_job_is_done_here(worker_jobs):
    import ui.embeddings as E
    from tests import job_functions as F

    busy = worker_jobs.Job(fn=F.wait_for_cancel, name="someone else's").begin()
    vectors, corpus = _vectors(_clustered(70))
    sources = dict.fromkeys(("cls", "mean"), vectors)
    [job] = E.prefetch(corpus, sources, 0, "pca", SEED)
    assert job.status == "queued"
    fitted = E.projections(corpus, sources, 0, "pca", SEED)["mean"]
    assert job.status == "cancelled" and job.started is None  # withdrawn, never ran
    np.testing.assert_allclose(fitted.coordinates("mean"),
                               Projector("pca", random_state=SEED).fit(vectors.get("mean", 0)).embedding_)
    busy.cancel()
    assert busy.wait(60)
