"""The corpus analyses (projection, separation, trajectory, probe): their numbers against
independent computations, their sentences on both sides of the fold noise, the command line
(`clsviz analyses`, `clsviz run`), results that cross a process boundary, and the digests and
runner pieces that keep them cached."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clsviz import Corpus, extract, trace
from clsviz.analyses import NotApplicable, ParamError, digest, run
from clsviz.analyses import core as analyses_core
from clsviz.analyses.embeddings import VectorColumn
from clsviz.analyses.probing import layer_sentence, probe_subset
from clsviz.cli import main
from clsviz.experiments import ProbeError, ProbeResult, summarize_selectivity
from clsviz.projection import trajectory_stack

WORDS = ("rain", "snow", "storm", "cloud", "film", "actor", "scene", "movie")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    texts = tuple(f"{w} number {i} came back again today" if i % 3 else f"the {w} was there {i}"
                  for i, w in ((i, WORDS[i % len(WORDS)]) for i in range(36)))  # fmt: skip
    kind = tuple("weather" if i % len(WORDS) < 4 else "cinema" for i in range(36))
    return Corpus(texts=texts, labels={"kind": kind})


@pytest.fixture(scope="module")
def vectors(tiny_encoder, corpus):
    return extract(tiny_encoder, corpus.texts, ("cls", "mean", "first"), labels=dict(corpus.labels))


def _pca(X: np.ndarray) -> np.ndarray:
    """PCA to 2-D of unit rows (cosine), by numpy's SVD."""
    unit = X.astype(np.float64) / np.linalg.norm(X, axis=1, keepdims=True)
    centred = unit - unit.mean(0)
    return centred, np.linalg.svd(centred, full_matrices=False)[2][:2]


def _same_up_to_sign(got: np.ndarray, expected: np.ndarray, atol: float = 1e-4) -> bool:
    """Equal column by column, each component up to its sign (PCA axes have no sign of their own)."""
    return all(np.allclose(got[:, k], expected[:, k], atol=atol) or np.allclose(got[:, k], -expected[:, k], atol=atol)
               for k in range(expected.shape[1]))  # fmt: skip


def _write(path, corpus: Corpus) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "kind"])
        writer.writerows(zip(corpus.texts, corpus.labels["kind"]))


def test_the_corpus_analyses_are_listed(capsys):
    assert main(["analyses"]) == 0
    out = capsys.readouterr().out
    for line in ("projection: The corpus projected to 2-D", "separation: How well a label separates",
                 "trajectory: One sentence across layers", "probe (long): Could any token do?"):
        assert line in out
    assert "--method umap|pca" in out and "inputs: corpus, vectors, [traces]" in out


def test_projection_on_the_command_line_is_the_pca_of_the_vectors(tmp_path, tiny_encoder, corpus, capsys):
    _write(tmp_path / "c.csv", corpus)
    out = tmp_path / "coords.csv"
    code = main(["run", "projection", "--model", str(tiny_encoder.info.source), "--corpus", str(tmp_path / "c.csv"),
                 "--labels", "kind", "--text", "the rain came", "--poolings", "cls,first", "--layer", "1",
                 "--method", "pca", "--out", str(out), "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "PCA of 36 texts after layer 1" in capsys.readouterr().out
    table = pd.read_csv(out, keep_default_na=False)
    assert set(table["pooling"]) == {"cls", "first"}  # 'first' was extracted because it was asked for
    expected_vectors = extract(tiny_encoder, corpus.texts, ("cls", "first"))
    for pooling in ("cls", "first"):
        rows = table[(table["pooling"] == pooling) & (table["source"] == "corpus")]
        assert list(rows["text"]) == list(corpus.texts) and list(rows["kind"]) == list(corpus.labels["kind"])
        centred, axes = _pca(expected_vectors.get(pooling, 1))
        assert _same_up_to_sign(rows[["x", "y"]].to_numpy(), centred @ axes.T)
    # The typed sentence is placed with the same axes: its own unit vector, centred on the corpus.
    typed = table[(table["pooling"] == "cls") & (table["source"] == "typed")]
    corpus_cls = extract(tiny_encoder, corpus.texts, ("cls",)).get("cls", 1).astype(np.float64)
    unit = corpus_cls / np.linalg.norm(corpus_cls, axis=1, keepdims=True)
    mine = trace(tiny_encoder, "the rain came").hidden_states[1, 0].astype(np.float64)
    placed = (mine / np.linalg.norm(mine) - unit.mean(0)) @ _pca(corpus_cls)[1].T
    assert list(typed["text"]) == ["the rain came"]
    assert _same_up_to_sign(typed[["x", "y"]].to_numpy(), placed[None, :])


def test_projection_refuses_what_the_vectors_do_not_hold(corpus, vectors):
    with pytest.raises(ParamError, match="hold no max; they hold cls, mean, first"):
        run("projection", corpus, vectors, poolings="cls,max", method="pca")
    with pytest.raises(NotApplicable, match="needs at least 5"):
        small = corpus.subset(range(3))
        run("projection", small, vectors.__class__(vectors.vectors[:3], vectors.poolings, vectors.texts[:3],
                                                     vectors.model_name, vectors.truncated[:3]), method="pca")


def test_a_column_projects_like_the_vectors_it_came_from(corpus, vectors):
    whole = run("projection", corpus, vectors, poolings="mean", layer=1, method="pca")
    column = VectorColumn.of(vectors, "mean", 1)
    alone = run("projection", corpus, column, poolings="mean", layer=1, method="pca")
    np.testing.assert_array_equal(alone.coordinates("mean"), whole.coordinates("mean"))
    assert len(pickle.dumps(column)) < vectors.vectors.nbytes / 4  # what is sent to a worker is the column
    with pytest.raises(KeyError, match="holds mean at layer 1 only"):
        column.get("mean", 0)


def test_separation_scores_are_scikit_learns(corpus, vectors):
    result = run("separation", corpus, vectors, label_column="kind", poolings="cls,mean")
    y = np.array(corpus.labels["kind"])
    for pooling in ("cls", "mean"):
        for layer in range(vectors.num_layers + 1):
            X = vectors.get(pooling, layer).astype(np.float64)
            knn = cross_val_score(KNeighborsClassifier(5, metric="cosine", algorithm="brute"), X, y,
                                  cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean()  # fmt: skip
            got = result.at(pooling, layer)
            if np.ptp(X, axis=0).max() == 0:  # every text the same vector ([CLS] at the embeddings): undefined
                assert np.isnan(got["knn_accuracy"]) and np.isnan(got["silhouette"])
                continue
            assert got["knn_accuracy"] == pytest.approx(knn)
            assert got["silhouette"] == pytest.approx(silhouette_score(X, y, metric="cosine"), abs=1e-5)
    assert result.majority == pytest.approx(max(np.mean(y == "weather"), np.mean(y == "cinema")))
    assert "no interval" in result.summary()[-1] and "'about even'" in result.summary()[-1]
    assert set(result.table()["label_column"]) == {"kind"}
    many = Corpus(texts=corpus.texts, labels={"id": tuple(map(str, range(36)))})
    with pytest.raises(NotApplicable, match="36 different values"):
        run("separation", many, vectors, max_classes=10)


def test_trajectory_is_the_path_through_a_projection_of_every_layer(corpus, vectors, tiny_encoder):
    t = trace(tiny_encoder, "the snow was there")
    result = run("trajectory", corpus, vectors, t, poolings="cls", method="pca")
    stack, rows, layers = trajectory_stack(vectors, "cls")  # the fitted points: corpus rows at every layer
    centred, axes = _pca(stack)
    assert _same_up_to_sign(result.projectors["cls"].embedding_, centred @ axes.T)
    unit = stack.astype(np.float64) / np.linalg.norm(stack, axis=1, keepdims=True)
    path = t.hidden_states[:, 0].astype(np.float64)
    expected = (path / np.linalg.norm(path, axis=1, keepdims=True) - unit.mean(0)) @ axes.T
    assert _same_up_to_sign(result.paths["cls"], expected)
    assert result.figure_keys() == ("embeddings.trajectory",)
    table = result.table()
    assert list(table[table["source"] == "typed"]["layer"]) == list(range(vectors.num_layers + 1))
    assert run("trajectory", corpus, vectors, poolings="cls").figure_keys() == ()  # nothing to follow


def test_probe_on_the_command_line_is_scikit_learns(tmp_path, tiny_encoder, corpus, capsys):
    _write(tmp_path / "c.csv", corpus)
    out = tmp_path / "probe.csv"
    code = main(["run", "probe", "--model", str(tiny_encoder.info.source), "--corpus", str(tmp_path / "c.csv"),
                 "--labels", "kind", "--label-column", "kind", "--poolings", "cls,mean,random", "--folds", "3",
                 "--out", str(out), "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "over 3 folds" in printed and "±" in printed
    table = pd.read_csv(out)
    assert set(table["pooling"]) == {"cls", "mean", "random"}
    v = extract(tiny_encoder, corpus.texts, ("cls", "mean"))
    y = np.array(corpus.labels["kind"])
    for pooling in ("cls", "mean"):
        for layer in range(v.num_layers + 1):
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=100, random_state=0))
            scores = cross_val_score(probe, v.get(pooling, layer), y, cv=StratifiedKFold(3, shuffle=True, random_state=0))
            row = table[(table["pooling"] == pooling) & (table["layer"] == layer)].iloc[0]
            assert row["accuracy_mean"] == pytest.approx(scores.mean())
            assert row["accuracy_sd"] == pytest.approx(scores.std(ddof=1))


def test_the_probe_subset_is_a_stratified_sample_or_a_message(corpus):
    sub, note = probe_subset(corpus, "kind", 12, 3)
    assert len(sub) == 12 and "stratified sample of 12 of the 36" in note
    share = corpus.labels["kind"].count("weather") / len(corpus)
    assert abs(sub.labels["kind"].count("weather") - 12 * share) < 1  # the balance kept
    assert list(sub.texts) == [t for t in corpus.texts if t in set(sub.texts)]  # in corpus order
    whole, none = probe_subset(corpus, "kind", 100, 3)
    assert whole is corpus and none is None
    with pytest.raises(ProbeError, match="fewer examples than the 15 folds"):
        probe_subset(corpus, "kind", 30, 15)


def _probe_result(rows: list[tuple[int, str, float, float]], folds: int = 5) -> ProbeResult:
    table = pd.DataFrame([{"layer": layer, "pooling": p, "accuracy_mean": m, "accuracy_sd": sd, "n": 100,
                           "folds": folds} for layer, p, m, sd in rows])  # fmt: skip
    return ProbeResult(table=table, label="y", classes=("a", "b"), class_counts=(50, 50), chance=0.5, majority=0.5,
                       n=100, folds=folds)  # fmt: skip


def test_no_clear_layer_when_the_gap_is_within_the_fold_noise():
    # Gap 0.03; its 95% half-width over 5 folds is 1.96 * sqrt((0.05² + 0.05²) / 5) = 0.062: about even.
    even = _probe_result([(0, "cls", 0.60, 0.05), (1, "cls", 0.80, 0.05), (2, "cls", 0.77, 0.05)])
    assert 1.96 * np.sqrt(2 * 0.05**2 / 5) > 0.03
    sentence = layer_sentence(even)
    assert sentence.startswith("No clear layer for cls: layers 1, 2 are about even with the best (80.0% ± 5.0%")
    # Gap 0.10 against a half-width of 1.96 * sqrt(2 * 0.01² / 5) = 0.012: layer 1 is clearly best.
    clear = _probe_result([(0, "cls", 0.60, 0.01), (1, "cls", 0.80, 0.01), (2, "cls", 0.70, 0.01)])
    assert layer_sentence(clear).startswith("For cls, layer 1 is clearly best")


def test_selectivity_is_inconclusive_when_its_interval_includes_zero():
    def table(acc, acc_sd, ctrl, ctrl_sd):
        return pd.DataFrame([{"layer": 1, "pooling": "cls", "accuracy": acc, "accuracy_sd": acc_sd,
                              "control_accuracy": ctrl, "control_sd": ctrl_sd, "selectivity": acc - ctrl, "n": 100,
                              "folds": 5, "types": 30}])  # fmt: skip

    wide = summarize_selectivity(table(0.70, 0.10, 0.66, 0.10))  # 4 points; half-width 12.4
    assert "(4.0 ± 12.4 points - its 95% interval includes 0, so inconclusive)" in wide
    narrow = summarize_selectivity(table(0.90, 0.01, 0.60, 0.01))  # 30 points; half-width 1.2
    assert "(30.0 ± 1.2 points)" in narrow and "inconclusive" not in narrow


def test_the_probe_reads_random_tokens_carried_by_the_vectors_without_a_second_pass(corpus, tiny_encoder, monkeypatch):
    from clsviz.analyses import probing

    plain = extract(tiny_encoder, corpus.texts, ("cls",), labels=dict(corpus.labels))
    carrying = extract(tiny_encoder, corpus.texts, ("cls",), labels=dict(corpus.labels), random_token_seed=0)
    params = dict(poolings="cls,random", folds=3, seed=0)
    expected = run("probe", corpus, plain, tiny_encoder, **params).table()  # its random tokens: a pass of its own

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the probe ran the model again for the random tokens")

    monkeypatch.setattr(probing, "random_token_vectors", no_second_pass)
    got = run("probe", corpus, carrying, tiny_encoder, **params).table()
    pd.testing.assert_frame_equal(got, expected)
    # Tokens picked with another seed are not taken for these: that run needs its own pass.
    with pytest.raises(AssertionError, match="ran the model again"):
        run("probe", corpus, carrying, tiny_encoder, **{**params, "seed": 1})


def test_results_cross_a_process_boundary_and_draw_the_same(corpus, vectors, tiny_encoder):
    t = trace(tiny_encoder, "the storm was there")
    results = [
        run("projection", corpus, vectors, [t], poolings="cls,mean", method="pca"),
        run("separation", corpus, vectors, poolings="cls"),
        run("trajectory", corpus, vectors, t, poolings="mean"),
        run("probe", corpus, vectors, poolings="cls", folds=3, control=True, mdl=True),
    ]
    for result in results:
        back = pickle.loads(pickle.dumps(result))
        pd.testing.assert_frame_equal(back.table(), result.table())
        assert back.summary() == result.summary()
        for key in result.figure_keys():
            assert back.figure(key).to_dict() == result.figure(key).to_dict()
    assert results[3].figure_keys() == ("probe.accuracy", "probe.selectivity", "probe.mdl")


def test_vectors_are_hashed_once_per_object_and_shard_folders_by_their_manifest(vectors, tmp_path, monkeypatch):
    from clsviz.extraction import save_shards
    from clsviz.vectors_io import load_vectors

    copy = vectors.__class__(vectors.vectors.copy(), vectors.poolings, vectors.texts, vectors.model_name,
                             vectors.truncated)  # fmt: skip
    first = digest(copy)
    hashed = []
    real = analyses_core._array_digest
    monkeypatch.setattr(analyses_core, "_array_digest", lambda *a: hashed.append(1) or real(*a))
    assert digest(copy) == first and not hashed  # the same object: not hashed again
    assert digest(vectors) == first and hashed  # equal content, another object: hashed, equal
    changed = copy.vectors.copy()
    changed[0, 0, 0, 0] += 1.0
    assert digest(vectors.__class__(changed, copy.poolings, copy.texts, copy.model_name, copy.truncated)) != first
    save_shards([vectors], tmp_path / "shards", rows=len(vectors.texts))
    a, b = load_vectors(tmp_path / "shards"), load_vectors(tmp_path / "shards")
    assert digest(a) == digest(b) == ("content", "ShardedVectors", a.content_key)


def test_the_runner_keys_a_combined_result_by_its_parts(corpus, vectors, tiny_encoder):
    from ui import embeddings, runner

    sources = dict.fromkeys(("cls", "mean"), vectors)
    parts = embeddings.projections(corpus, sources, 1, "pca", 42)
    typed = [trace(tiny_encoder, "the cloud came")]
    joined = embeddings.panels(parts, typed)
    assert embeddings.panels(parts, typed) is joined  # kept, so its figures are cached per view
    assert embeddings.panels(parts, [trace(tiny_encoder, "another one")]) is not joined
    assert runner.figure(joined, "embeddings.panels", colour="kind") is runner.figure(joined, "embeddings.panels", colour="kind")
    assert list(joined.typed) == ["cls", "mean"] and joined.typed_texts == ("the cloud came",)
    np.testing.assert_array_equal(joined.coordinates("mean"), parts["mean"].coordinates("mean"))
