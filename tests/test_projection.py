"""clsviz.projection (Projector, label separation) and the Embeddings figures.

Numbers are checked against independent computations: PCA against numpy's SVD and
scikit-learn's PCA, kNN accuracy against scikit-learn's cross-validated KNeighborsClassifier,
silhouette against a plain-numpy silhouette and scikit-learn's. UMAP inputs stay small.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import clsviz.projection as projection
from clsviz import PooledVectors, figures
from clsviz.figures import WEBGL_THRESHOLD, safe_text
from clsviz.figures._embeddings import MAX_CLASSES
from clsviz.projection import PROJECTION_METHODS, Projector
from clsviz.separation import (
    SEPARATION_METRICS,
    knn_accuracy,
    label_separation,
    separation_by_layer,
    silhouette,
    usable_labels,
)
from tests.test_attention import _arr


def _clusters(n: int = 150, dims: int = 24, classes: int = 3, spread: float = 0.35, seed: int = 0):
    """Points around ``classes`` random centres (distinct directions), with their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 3
    labels = np.arange(n) % classes
    X = centres[labels] + spread * rng.normal(size=(n, dims))
    return X.astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    return _clusters()


@pytest.fixture(scope="module")
def umap_fit(data):
    X, _ = data
    return Projector("umap", random_state=7).fit(X)


# -- parameters and validation -----------------------------------------------------------------


def test_unknown_method_and_metric_list_the_valid_names(data):
    X, _ = data
    with pytest.raises(ValueError, match="umap, pca"):
        Projector("tsne").fit(X)
    with pytest.raises(ValueError, match="cosine, euclidean"):
        Projector("pca", metric="manhattan").fit(X)
    with pytest.raises(ValueError, match="n_components"):
        Projector("pca", n_components=0).fit(X)
    assert PROJECTION_METHODS == ("umap", "pca")


def test_bad_inputs_get_clear_errors(data):
    X, _ = data
    with pytest.raises(NotFittedError, match="fit"):
        Projector("pca").transform(X)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="rows 3"):
        Projector("pca").fit(bad)
    with pytest.raises(ValueError, match="2-D"):
        Projector("pca").fit(X[0])
    fitted = Projector("pca").fit(X)
    with pytest.raises(ValueError, match="24"):
        fitted.transform(X[:, :5])
    with pytest.raises(ValueError, match="at least 2"):
        Projector("pca").fit(X[:1])
    with pytest.raises(ValueError, match="at most"):
        Projector("pca", n_components=30).fit(X)


def test_umap_refuses_too_few_points_and_clamps_neighbours(data):
    X, _ = data
    with pytest.raises(ValueError, match="method='pca'"):
        Projector("umap", random_state=0).fit(X[:4])
    small = Projector("umap", n_neighbors=15, random_state=0).fit(X[:9])
    assert small.n_neighbors_ == 8
    assert small.embedding_.shape == (9, 2)
    assert np.isfinite(small.embedding_).all()


def test_follows_the_scikit_learn_estimator_convention(data):
    X, _ = data
    p = Projector("pca", n_components=3, metric="euclidean")
    assert p.get_params()["n_components"] == 3
    copy = clone(p)
    assert copy.get_params() == p.get_params()
    assert copy.fit(X) is copy
    assert not hasattr(p, "embedding_")  # clone fitted, the original untouched


# -- shapes, determinism, placement -------------------------------------------------------------


@pytest.mark.parametrize("method", PROJECTION_METHODS)
def test_fit_transform_shapes(method, data, umap_fit):
    X, _ = data
    p = umap_fit if method == "umap" else Projector(method, random_state=7).fit(X)
    assert p.embedding_.shape == (len(X), 2)
    assert p.embedding_.dtype == np.float32
    assert p.n_samples_fit_ == len(X) and p.n_features_in_ == X.shape[1]
    assert p.transform(X[:4]).shape == (4, 2)
    assert p.transform(X[:0]).shape == (0, 2)


def test_umap_with_a_seed_is_reproducible(data, umap_fit):
    X, _ = data
    again = Projector("umap", random_state=7).fit(X)
    np.testing.assert_array_equal(umap_fit.embedding_, again.embedding_)
    np.testing.assert_array_equal(umap_fit.transform(X[:5]), again.transform(X[:5]))
    other = Projector("umap", random_state=8).fit(X)
    assert not np.array_equal(umap_fit.embedding_, other.embedding_)


def test_umap_keeps_clusters_and_places_new_points_in_their_cluster(data, umap_fit):
    X, labels = data
    emb = umap_fit.embedding_
    # In 2-D, each point's nearest other point has its label (clusters survive the projection).
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    # New points drawn around the same centres land next to points of their own cluster.
    new, new_labels = _clusters(n=12, seed=0, spread=0.2)
    placed = umap_fit.transform(new)
    nearest = ((placed[:, None] - emb[None]) ** 2).sum(-1).argmin(1)
    assert (labels[nearest] == new_labels).all()


def test_large_inputs_fit_a_subset_and_place_the_rest(monkeypatch):
    monkeypatch.setattr(projection, "MAX_UMAP_FIT", 90)
    X, labels = _clusters(n=130, seed=3)
    p = Projector("umap", random_state=1).fit(X)
    assert len(p.fit_rows_) == 90 and len(np.unique(p.fit_rows_)) == 90
    rest = np.setdiff1d(np.arange(130), p.fit_rows_)
    np.testing.assert_array_equal(p.embedding_[p.fit_rows_], p.umap_.embedding_)
    np.testing.assert_allclose(p.embedding_[rest], p.transform(X[rest]), atol=1e-5)
    fitted = p.embedding_[p.fit_rows_]
    nearest = ((p.embedding_[rest][:, None] - fitted[None]) ** 2).sum(-1).argmin(1)
    assert (labels[p.fit_rows_][nearest] == labels[rest]).mean() > 0.9


@pytest.mark.parametrize("rows", [150, 10])  # more points than dimensions, and fewer
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_pca_matches_numpy_svd(metric, rows, data):
    X = data[0][:rows]
    p = Projector("pca", n_components=3, metric=metric).fit(X)
    Z = X.astype(np.float64)
    if metric == "cosine":
        Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    centred = Z - Z.mean(0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:3].T
    signs = np.sign((expected * p.embedding_).sum(0))  # an SVD's signs are arbitrary
    np.testing.assert_allclose(p.embedding_, expected * signs, atol=1e-4)
    np.testing.assert_allclose(p.explained_variance_ratio_, (s**2 / (s**2).sum())[:3], rtol=1e-6)
    Y = X[:7] * 1.5 + 0.1
    Zy = Y.astype(np.float64)
    if metric == "cosine":
        Zy = Zy / np.linalg.norm(Zy, axis=1, keepdims=True)
    np.testing.assert_allclose(p.transform(Y), ((Zy - Z.mean(0)) @ vt[:3].T) * signs, atol=1e-4)


def test_pca_matches_scikit_learn(data):
    X, _ = data
    ours = Projector("pca", n_components=2, metric="euclidean").fit(X)
    ref = PCA(n_components=2).fit(X.astype(np.float64))
    got = ref.transform(X)
    signs = np.sign((got * ours.embedding_).sum(0))
    np.testing.assert_allclose(ours.embedding_, got * signs, atol=1e-4)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-5)
    # Cosine PCA ignores vector length: scaling a row does not move it.
    cos = Projector("pca").fit(X)
    np.testing.assert_allclose(cos.transform(X[:5] * 9.0), cos.embedding_[:5], atol=1e-5)


def test_warm_up_runs_once_per_process(monkeypatch):
    monkeypatch.setattr(projection, "_WARM_DONE", False)
    assert projection.warm_up(n_samples=60, n_features=8) is True
    assert projection.warm_up(n_samples=60, n_features=8) is False


# -- label separation in the original space ----------------------------------------------------


def _numpy_silhouette(X: np.ndarray, y: np.ndarray) -> float:
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    D = 1 - U @ U.T
    scores = []
    for i in range(len(X)):
        own = (y == y[i]) & (np.arange(len(X)) != i)
        a = D[i, own].mean() if own.any() else 0.0
        b = min(D[i, y == c].mean() for c in np.unique(y) if c != y[i])
        scores.append(0.0 if not own.any() else (b - a) / max(a, b))
    return float(np.mean(scores))


def test_knn_accuracy_matches_scikit_learn_cross_validation():
    X, y = _clusters(n=120, spread=6.0, seed=4)  # overlapping, so the score is not trivially 1
    ref = cross_val_score(
        KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute"),
        X,
        y,
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=0),
    ).mean()
    got = knn_accuracy(X, y, k=5, folds=5, random_state=0)
    assert 0.4 < got < 1.0
    assert got == pytest.approx(ref, abs=1e-12)
    euclid = cross_val_score(
        KNeighborsClassifier(n_neighbors=3),
        X,
        y,
        cv=StratifiedKFold(n_splits=4, shuffle=True, random_state=2),
    ).mean()
    assert knn_accuracy(X, y, k=3, folds=4, metric="euclidean", random_state=2) == pytest.approx(
        euclid, abs=1e-12
    )


def test_silhouette_matches_numpy_and_scikit_learn():
    X, y = _clusters(n=90, spread=1.5, seed=5)
    got = silhouette(X, y)
    assert got == pytest.approx(_numpy_silhouette(X.astype(np.float64), y), abs=1e-5)
    assert got == pytest.approx(silhouette_score(X, y, metric="cosine"), abs=1e-5)


def test_unlabelled_rows_are_left_out():
    X, y = _clusters(n=100, spread=1.5, seed=6)
    labels = [str(v) for v in y]
    for i in (0, 7, 33):
        labels[i] = ""
    labels[50] = None
    labels[51] = float("nan")
    keep = np.array([i for i in range(100) if i not in (0, 7, 33, 50, 51)])
    assert silhouette(X, labels) == pytest.approx(
        silhouette_score(X[keep], y[keep], metric="cosine"), abs=1e-5
    )
    ref = cross_val_score(
        KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute"),
        X[keep],
        y[keep].astype(str),
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=0),
    ).mean()
    assert knn_accuracy(X, labels) == pytest.approx(ref, abs=1e-12)
    rows, values = usable_labels(labels)
    np.testing.assert_array_equal(rows, keep)
    assert list(values) == [labels[i] for i in keep]


def test_one_label_value_is_refused_with_a_reason():
    X, _ = _clusters(n=20)
    with pytest.raises(ValueError, match="two different values"):
        knn_accuracy(X, ["a"] * 19 + [""])
    with pytest.raises(ValueError, match="its own label"):
        silhouette(X[:4], ["a", "b", "c", "d"])


def test_separation_by_layer_is_tidy_and_matches_each_layer():
    rng = np.random.default_rng(9)
    n, levels, dims = 60, 3, 12
    y = np.arange(n) % 2
    vectors = rng.normal(size=(n, levels, 2, dims)).astype(np.float32)
    vectors[:, 2, 0] += 3.0 * y[:, None]  # the cls reading separates the labels at layer 2 only
    pooled = PooledVectors(
        vectors=vectors,
        poolings=("cls", "mean"),
        texts=tuple(f"t{i}" for i in range(n)),
        model_name="m",
        truncated=np.zeros(n, bool),
    )
    table = separation_by_layer(pooled, list(y), poolings=("cls", "mean"))
    assert list(table.columns) == ["layer", "pooling", "metric", "value"]
    assert len(table) == levels * 2 * len(SEPARATION_METRICS)
    for (layer, pooling), group in table.groupby(["layer", "pooling"]):
        X = vectors[:, layer, ("cls", "mean").index(pooling)]
        values = dict(zip(group["metric"], group["value"]))
        assert values["silhouette"] == pytest.approx(silhouette_score(X, y, metric="cosine"), abs=1e-5)
        assert values == pytest.approx(label_separation(X, list(y)))
    best = table[table["metric"] == "knn_accuracy"].sort_values("value").iloc[-1]
    assert (best["layer"], best["pooling"]) == (2, "cls")


# -- figures ----------------------------------------------------------------------------------


def _panels(n=30, labels=None, typed=True, texts=None):
    rng = np.random.default_rng(0)
    coords = {name: rng.normal(size=(n, 2)).astype(np.float32) for name in ("[CLS]", "mean", "max")}
    typed_xy = {name: rng.normal(size=(2, 2)) for name in coords} if typed else None
    texts = texts or [f"sentence {i}" for i in range(n)]
    fig = figures.embedding_panels(
        coords,
        texts,
        labels=labels,
        label_name="topic",
        typed=typed_xy,
        typed_texts=["my <i>own</i> one", "second"] if typed else (),
    )
    return fig, coords, typed_xy


def test_panels_escape_hover_text_and_colour_by_label():
    from clsviz.figures import plot_decimals

    n = 30
    texts = [f"row {i} <b>bold</b> & <script>x</script>" for i in range(n)]
    labels = ["<em>a</em>" if i % 3 == 0 else "b" if i % 3 == 1 else "" for i in range(n)]
    fig, coords, typed = _panels(n, labels=labels, texts=texts)
    spec = fig.to_dict()
    corpus = [t for t in spec["data"] if t.get("name") != "your sentences"]
    assert len(corpus) == 3 * 3  # three panels x (a, b, no label)
    assert {t["type"] for t in spec["data"]} == {"scatter"}
    names = {t["name"] for t in corpus}
    assert names == {safe_text("<em>a</em>"), "b", "(no label)"}
    for t in corpus:
        for h in t["hovertext"]:
            assert "<b>bold" not in h and "<script>" not in h and "&lt;script&gt;" in h
    # every corpus point appears once per panel, at its coordinates
    for axis, xy in zip(("x", "x2", "x3"), coords.values()):
        traces = [t for t in corpus if t.get("xaxis", "x") == axis]
        got = np.c_[
            np.concatenate([_arr(t["x"]) for t in traces]), np.concatenate([_arr(t["y"]) for t in traces])
        ]
        expected = np.round(xy.astype(np.float64), plot_decimals(xy))  # rounded to the panel's own spread
        np.testing.assert_allclose(
            got[np.lexsort(got.T[::-1])], expected[np.lexsort(expected.T[::-1])], atol=1e-6
        )
    # one colour per class, the same in every panel
    for name in names:
        assert len({t["marker"]["color"] for t in corpus if t["name"] == name}) == 1
    stars = [t for t in spec["data"] if t.get("name") == "your sentences"]
    assert len(stars) == 3
    assert all(
        t["marker"]["symbol"] == "star" and t["marker"]["size"] > corpus[0]["marker"]["size"] for t in stars
    )
    assert list(stars[0]["text"]) == ["1", "2"]
    assert "my &lt;i&gt;own&lt;/i&gt; one" in stars[0]["hovertext"][0]
    decimals = plot_decimals(list(coords.values())[1])
    np.testing.assert_allclose(
        np.c_[_arr(stars[1]["x"]), _arr(stars[1]["y"])], np.round(typed["mean"], decimals), atol=1e-6
    )


def test_panels_use_webgl_above_the_threshold():
    small, _, _ = _panels(WEBGL_THRESHOLD, labels=None, typed=False)
    big, _, _ = _panels(WEBGL_THRESHOLD + 1, labels=None, typed=False)
    assert {t["type"] for t in small.to_dict()["data"]} == {"scatter"}
    assert {t["type"] for t in big.to_dict()["data"]} == {"scattergl"}
    assert len(big.to_dict()["data"]) == 3


def test_panels_numeric_labels_use_a_colour_scale_and_many_classes_fold():
    n = 60
    fig, _, _ = _panels(n, labels=[str(i * 0.5) for i in range(n)], typed=False)
    data = fig.to_dict()["data"]
    assert len(data) == 3
    assert _arr(data[0]["marker"]["color"]).tolist() == [i * 0.5 for i in range(n)]
    fig, _, _ = _panels(n, labels=[f"c{i % 30}" for i in range(n)], typed=False)
    names = {t["name"] for t in fig.to_dict()["data"]}
    assert len(names) == MAX_CLASSES and "(other)" in names


def test_panels_check_shapes():
    with pytest.raises(ValueError, match=r"expected shape \(3, 2\)"):
        figures.embedding_panels({"a": np.zeros((4, 2))}, ["x", "y", "z"])


def test_trajectory_is_a_path_labelled_by_layer():
    path = np.array([[0, 0], [1, 0.5], [2, 1.5], [2.5, 3]], dtype=np.float32)
    background = (np.random.default_rng(0).normal(size=(40, 2)), np.repeat(np.arange(4), 10))
    fig = figures.trajectory_figure(
        {"[CLS]": path, "mean": path[::-1]},
        {"[CLS]": background},
        text="a <b> sentence",
        background_texts=[f"<s>{i}</s>" for i in range(40)],
    )
    spec = fig.to_dict()
    corpus = [t for t in spec["data"] if t["name"] != "your sentence"][0]
    assert corpus["hovertext"][0] == "layer 0: &lt;s&gt;0&lt;/s&gt;" and corpus["hovertext"][39].startswith(
        "layer 3:"
    )
    paths = [t for t in spec["data"] if t["name"] == "your sentence"]
    assert len(paths) == 2
    assert "lines" in paths[0]["mode"] and list(paths[0]["text"]) == ["0", "1", "2", "3"]
    np.testing.assert_allclose(np.c_[_arr(paths[0]["x"]), _arr(paths[0]["y"])], path)
    np.testing.assert_allclose(np.c_[_arr(paths[1]["x"]), _arr(paths[1]["y"])], path[::-1])
    assert "&lt;b&gt;" in spec["layout"]["title"]["text"]
    assert len(spec["data"]) == 3  # background only where given


def test_separation_figure_draws_each_pooling_per_metric():
    table = pd.DataFrame(
        [
            {"layer": layer, "pooling": s, "metric": m, "value": 0.1 * layer + (0.05 if s == "cls" else 0.0)}
            for s in ("cls", "mean")
            for m in SEPARATION_METRICS
            for layer in range(4)
        ]
    )
    fig = figures.separation_figure(table, layer=2, chance=0.25)
    spec = fig.to_dict()
    assert len(spec["data"]) == 4
    cls_knn = spec["data"][0]
    assert _arr(cls_knn["x"]).tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(_arr(cls_knn["y"]), [0.05, 0.15, 0.25, 0.35])
    shapes = spec["layout"]["shapes"]
    assert sum(s.get("x0") == 2 for s in shapes) == 2 and any(s.get("y0") == 0.25 for s in shapes)
    with pytest.raises(ValueError, match="missing columns"):
        figures.separation_figure(table.drop(columns="metric"))


def test_coordinates_table_lists_every_point_shown():
    from clsviz.projection import coordinates_table

    rng = np.random.default_rng(0)
    coords = {"cls": rng.normal(size=(4, 2)), "mean": rng.normal(size=(4, 2))}
    typed = {"cls": rng.normal(size=(1, 2)), "mean": rng.normal(size=(1, 2))}
    table = coordinates_table(
        ["a", "b", "c", "d"], ["x", "y", "x", ""], "topic", coords, ["mine"], typed, 3, "umap"
    )
    assert list(table.columns) == ["source", "text", "topic", "pooling", "layer", "method", "x", "y"]
    assert len(table) == 2 * (4 + 1)
    cls_rows = table[(table["pooling"] == "cls") & (table["source"] == "corpus")]
    np.testing.assert_allclose(cls_rows[["x", "y"]].to_numpy(), coords["cls"])
    assert cls_rows["topic"].tolist() == ["x", "y", "x", ""]
    mine = table[(table["source"] == "typed") & (table["pooling"] == "mean")]
    assert mine["text"].tolist() == ["mine"] and np.allclose(mine[["x", "y"]].to_numpy(), typed["mean"])
    assert set(table["layer"]) == {3} and set(table["method"]) == {"umap"}


def test_tiny_spreads_keep_their_points_apart_and_collapses_are_named():
    from clsviz.figures import drawn_positions, embedding_panels, plot_decimals

    rng = np.random.default_rng(0)
    # The PCA of [CLS] at middle layers spans about 0.002: rounding to 4 decimals drew a lattice.
    tiny = rng.normal(scale=0.0005, size=(896, 2))
    assert drawn_positions(tiny) == len(np.unique(tiny, axis=0)) == 896
    assert drawn_positions(tiny, 4) < 400  # what fixed 4-decimal rounding did
    assert plot_decimals(tiny) >= 7
    fig = embedding_panels(
        {"[CLS]": tiny, "mean": np.repeat(tiny[:10], 90, axis=0)[:896]}, [f"t{i}" for i in range(896)]
    )
    titles = [a.text for a in fig.layout.annotations]
    assert "positions" not in titles[0]
    assert "896 points drawn at 10 positions" in titles[1]
    xs = np.concatenate([np.asarray(tr.x, dtype=float) for tr in fig.data if tr.xaxis in ("x", None)])
    ys = np.concatenate([np.asarray(tr.y, dtype=float) for tr in fig.data if tr.xaxis in ("x", None)])
    assert len(np.unique(np.c_[xs, ys], axis=0)) == 896


def test_scores_of_identical_vectors_are_undefined_not_zero():
    from clsviz.separation import label_separation, score_text

    same = np.ones((40, 8), dtype=np.float32)
    labels = ["a", "b"] * 20
    scores = label_separation(same, labels)
    assert np.isnan(scores["silhouette"]) and np.isnan(scores["knn_accuracy"])
    assert score_text(scores["silhouette"]) == "undefined" and score_text(0.25) == "0.250"
    varied = np.random.default_rng(1).normal(size=(40, 8))
    assert np.isfinite(label_separation(varied, labels)["silhouette"])
