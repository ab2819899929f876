"""clsviz.similarity: every number checked against a direct numpy / scipy computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from clsviz import extract, figures, trace
from clsviz.baseline import (
    BUILTIN_SENTENCES,
    REFERENCES,
    VIEWS,
    anisotropy_baseline,
    baseline_texts,
    measure_baseline,
)
from clsviz.benchmark import benchmark_from_vectors, pair_texts, sentence_benchmark
from clsviz.corpus import demo_corpus, demo_pairs
from clsviz.metrics import cosine, cosine_matrix, spearman
from clsviz.norms import dimension_values, massive_dimensions, token_norms, top_dimensions
from clsviz.similarity import (
    cls_summary,
    cls_token_cosines,
    compare_sentences,
    describe_summary,
    token_table,
)

SAMPLE = BUILTIN_SENTENCES[:10]
TEXTS = ("A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today.")


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def baseline(encoder):
    return measure_baseline(encoder, SAMPLE)


@pytest.fixture(scope="module")
def traces(encoder):
    return [trace(encoder, t) for t in TEXTS]


@pytest.fixture(scope="module")
def sample_traces(encoder, baseline):
    # The same texts as the baseline, traced one by one through the eager model: an
    # independent path to every vector the batched baseline used.
    return [trace(encoder, t, max_tokens=128) for t in baseline.texts]


def test_cosine_helpers():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(3, 6))
    full = cosine_matrix(a, b)
    for i in range(4):
        for j in range(3):
            assert full[i, j] == pytest.approx(_cos(a[i], b[j]), abs=1e-12)
    assert cosine(a[:3], b) == pytest.approx([_cos(x, y) for x, y in zip(a[:3], b)], abs=1e-12)
    assert cosine(np.zeros(6), b[0]) == 0.0


def test_cls_token_cosines_raw(traces):
    t = traces[0]
    got = cls_token_cosines(t)
    assert got.shape == (t.num_layers + 1, t.seq_len)
    for layer in range(t.num_layers + 1):
        h = t.hidden_states[layer]
        for i in range(t.seq_len):
            assert got[layer, i] == pytest.approx(_cos(h[t.cls_index], h[i]), abs=1e-6)
    assert np.allclose(got[:, t.cls_index], 1.0)


def test_cls_summary_raw_and_pooler(encoder, traces):
    t = traces[1]
    summary = cls_summary(t)
    assert list(summary["layer"]) == list(range(t.num_layers + 1))
    content = ~t.special_mask
    pooler = encoder.model.pooler
    for layer in range(t.num_layers + 1):
        h = t.hidden_states[layer].astype(np.float64)
        cls = h[t.cls_index]
        row = summary.iloc[layer]
        assert row["cls_vs_mean_content"] == pytest.approx(_cos(cls, h[content].mean(0)), abs=1e-6)
        assert row["cls_vs_mean_all"] == pytest.approx(_cos(cls, h.mean(0)), abs=1e-6)
        assert row["cls_norm"] == pytest.approx(np.linalg.norm(cls), rel=1e-6)
        # The pooler recomputed from its weights: tanh(W cls + b).
        with torch.no_grad():
            w, bias = pooler.dense.weight.double().numpy(), pooler.dense.bias.double().numpy()
        assert row["cls_vs_pooler"] == pytest.approx(_cos(cls, np.tanh(w @ cls + bias)), abs=1e-5)


def test_cls_summary_without_pooler(tiny_model_dirs):
    from clsviz import load_encoder

    enc = load_encoder(str(tiny_model_dirs["roberta"]))  # built without a pooling layer
    summary = cls_summary(trace(enc, "the cat chased a dog"))
    assert summary["cls_vs_pooler"].isna().all()
    assert summary["cls_vs_mean_all"].notna().all()


def test_baseline_sanity(encoder, baseline):
    layers = encoder.info.num_layers + 1
    table = baseline.table
    assert set(table["reference"]) == set(REFERENCES)  # the bundled model has a pooler
    assert set(table["view"]) == {"raw", "centred"}
    assert len(table) == layers * len(REFERENCES) * 2
    assert table["mean"].between(-1, 1).all() and (table["std"] >= 0).all()
    assert baseline.token_mean.shape == (layers, encoder.info.hidden_size)
    wide = anisotropy_baseline(encoder, SAMPLE)
    assert list(wide["layer"]) == list(range(layers))
    assert wide[list(REFERENCES)].abs().le(1).all().all()
    n = len(SAMPLE)
    pairs = table.set_index(["reference", "view", "layer"])["pairs"]
    assert pairs[("cls", "raw", 0)] == n * (n - 1)


def test_baseline_matches_brute_force(baseline, sample_traces):
    owner = np.concatenate([np.full((~t.special_mask).sum(), i) for i, t in enumerate(sample_traces)])
    table = baseline.table.set_index(["reference", "view", "layer"])
    for layer in (0, 3, 6):
        tokens = np.concatenate([t.hidden_states[layer][~t.special_mask] for t in sample_traces]).astype(
            np.float64
        )
        cls = np.stack([t.cls(layer) for t in sample_traces]).astype(np.float64)
        means = np.stack([t.hidden_states[layer].mean(0) for t in sample_traces]).astype(np.float64)
        sims = [
            _cos(a, b) for i, a in enumerate(tokens) for j, b in enumerate(tokens) if owner[i] != owner[j]
        ]
        assert table.loc[("token", "raw", layer), "mean"] == pytest.approx(np.mean(sims), abs=1e-4)
        assert table.loc[("token", "raw", layer), "std"] == pytest.approx(np.std(sims), abs=1e-4)
        assert table.loc[("token", "raw", layer), "pairs"] == len(sims)
        cross = [
            _cos(cls[i], tokens[k]) for i in range(len(cls)) for k in range(len(tokens)) if owner[k] != i
        ]
        assert table.loc[("cls_token", "raw", layer), "mean"] == pytest.approx(np.mean(cross), abs=1e-4)
        pairs = [(i, j) for i in range(len(cls)) for j in range(len(cls)) if i != j]
        assert table.loc[("mean", "raw", layer), "mean"] == pytest.approx(
            np.mean([_cos(means[i], means[j]) for i, j in pairs]), abs=1e-4
        )
        # Centred: each kind on its own corpus mean.
        assert baseline.token_mean[layer] == pytest.approx(tokens.mean(0), abs=1e-4)
        centred = means - means.mean(0)
        assert table.loc[("mean", "centred", layer), "mean"] == pytest.approx(
            np.mean([_cos(centred[i], centred[j]) for i, j in pairs]), abs=1e-4
        )


def test_baseline_texts_come_from_the_demo_corpus():
    texts, source = baseline_texts(sample=50, seed=1)
    demo = set(demo_corpus().texts)
    assert source == "demo corpus" and len(texts) == 50 and set(texts) <= demo
    assert baseline_texts(sample=50, seed=1) == (texts, source)  # reproducible


def test_views(traces, baseline):
    t = traces[0]
    raw = cls_token_cosines(t)
    minus = cls_token_cosines(t, "minus baseline", baseline)
    ref = baseline.wide("raw")["cls_token"].to_numpy()
    assert minus == pytest.approx(raw - ref[:, None], abs=1e-9)
    centred = cls_token_cosines(t, "centred", baseline)
    h = t.hidden_states.astype(np.float64) - baseline.token_mean[:, None, :]
    cls = t.hidden_states[:, t.cls_index].astype(np.float64) - baseline.mean_vector("cls")
    for layer in (1, 4, 6):
        for i in range(t.seq_len):
            if i != t.cls_index:
                assert centred[layer, i] == pytest.approx(_cos(cls[layer], h[layer, i]), abs=1e-6)
    # [CLS] is the same vector in every text at the embedding layer: centred, it is zero.
    assert np.allclose(centred[0], 0.0)
    summary = cls_summary(t, "minus baseline", baseline)
    raw_summary = cls_summary(t)
    assert summary["cls_vs_mean_content"].to_numpy() == pytest.approx(
        raw_summary["cls_vs_mean_content"].to_numpy() - baseline.wide("raw")["cls_mean_content"].to_numpy(),
        abs=1e-9,
    )
    last = baseline.table.set_index(["reference", "view", "layer"]).loc[
        ("cls_mean_content", "raw", t.num_layers)
    ]
    z = (raw_summary["cls_vs_mean_content"].iloc[-1] - last["mean"]) / last["std"]
    reading = describe_summary(raw_summary, baseline)
    assert (
        f"{raw_summary['cls_vs_mean_content'].iloc[-1]:.2f}" in reading
        and f"{abs(z):.1f} standard" in reading
    )
    with pytest.raises(ValueError, match="needs a baseline"):
        cls_token_cosines(t, "centred")
    with pytest.raises(ValueError, match="Valid"):
        cls_token_cosines(t, "sideways", baseline)


def test_baseline_of_another_model_is_refused(tiny_encoder, traces):
    small = measure_baseline(tiny_encoder, SAMPLE[:4])
    assert small.table["mean"].between(-1, 1).all()
    assert "cls_pooler" in small.references
    with pytest.raises(ValueError, match="not on"):
        cls_token_cosines(traces[0], "centred", small)


def test_compare_sentences(encoder, traces, baseline):
    table = compare_sentences(traces, baseline=baseline)
    layers = encoder.info.num_layers + 1
    assert len(table) == 3 * layers * 3  # pairs x layers x poolings
    pv = extract(encoder, TEXTS, ("cls", "mean", "max"))
    for s in ("cls", "mean", "max"):
        for layer in (0, 6):
            v = pv.get(s, layer)
            row = table[(table.a == 1) & (table.b == 3) & (table.pooling == s) & (table.layer == layer)].iloc[
                0
            ]
            assert row["cosine"] == pytest.approx(_cos(v[0], v[2]), abs=1e-5)
            assert row["reference"] == pytest.approx(baseline.reference(s)[0][layer])
    centred = compare_sentences(traces, view="centred", baseline=baseline)
    v = pv.get("mean", 6).astype(np.float64) - baseline.mean_vector("mean")[6]
    row = centred[
        (centred.a == 1) & (centred.b == 2) & (centred.pooling == "mean") & (centred.layer == 6)
    ].iloc[0]
    assert row["cosine"] == pytest.approx(_cos(v[0], v[1]), abs=1e-5)
    # The paraphrase pair is closer than the unrelated pair with mean pooling at the last layer.
    last = table[(table.layer == 6) & (table.pooling == "mean")].set_index(["a", "b"])["cosine"]
    assert last[(1, 2)] > last[(1, 3)]
    with pytest.raises(ValueError, match="at least two"):
        compare_sentences(traces[:1])


def test_spearman_matches_scipy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = np.round(x + rng.normal(size=40), 0)  # many ties
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    ties = np.array([1, 1, 2, 2, 2, 3, 5, 5.0])
    other = np.array([3, 1, 2, 5, 4, 4, 0, 1.0])
    assert spearman(ties, other) == pytest.approx(stats.spearmanr(ties, other).statistic, abs=1e-12)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_sentence_benchmark_matches_scipy(encoder):
    pairs = demo_pairs().iloc[:24]
    result = sentence_benchmark(encoder, pairs)
    layers = encoder.info.num_layers + 1
    assert len(result.table) == layers * 3
    pv = extract(encoder, list(pair_texts(pairs)), ("cls", "mean", "max"))
    where = {t: i for i, t in enumerate(pv.texts)}
    for s in ("cls", "mean", "max"):
        for layer in (2, 6):
            v = pv.get(s, layer).astype(np.float64)
            cos = [_cos(v[where[a]], v[where[b]]) for a, b in zip(pairs.sentence1, pairs.sentence2)]
            row = result.table[(result.table.pooling == s) & (result.table.layer == layer)].iloc[0]
            assert row["spearman"] == pytest.approx(stats.spearmanr(cos, pairs.score).statistic, abs=1e-4)
            c = v - v.mean(0)
            cos_c = [_cos(c[where[a]], c[where[b]]) for a, b in zip(pairs.sentence1, pairs.sentence2)]
            assert row["spearman_centred"] == pytest.approx(
                stats.spearmanr(cos_c, pairs.score).statistic, abs=1e-4
            )
    # [CLS] at the embedding layer is the same vector for every text: no ranking, so NaN.
    first = result.table[(result.table.pooling == "cls") & (result.table.layer == 0)].iloc[0]
    assert np.isnan(first["spearman"]) and np.allclose(result.cosines[:, 0, 0], 1.0)
    table = result.pair_table(6)
    assert list(table.columns[-3:]) == ["cos_cls", "cos_mean", "cos_max"]
    # The same numbers from vectors extracted separately (with extra texts) and looked up by text.
    again = benchmark_from_vectors(
        extract(encoder, [*pv.texts, "An extra sentence."], ("cls", "mean", "max")), pairs
    )
    np.testing.assert_allclose(again.table["spearman"], result.table["spearman"], atol=1e-5, equal_nan=True)
    with pytest.raises(ValueError, match="at least 3"):
        sentence_benchmark(encoder, pairs.iloc[:2])
    with pytest.raises(ValueError, match="score"):
        sentence_benchmark(encoder, pairs.drop(columns="score"))


def test_norms_and_top_dimensions(traces):
    t = traces[2]
    norms = token_norms(t)
    assert norms == pytest.approx(np.sqrt((t.hidden_states.astype(np.float64) ** 2).sum(-1)), rel=1e-6)
    top = top_dimensions(t, k=4)
    assert set(top["role"]) == {"cls", "sep"} and len(top) == (t.num_layers + 1) * 2 * 4
    for layer in (0, 6):
        h = t.hidden_states[layer].astype(np.float64)
        for role, pos in (("cls", t.cls_index), ("sep", t.sep_index)):
            rows = top[(top.layer == layer) & (top.role == role)].sort_values("rank")
            expected = np.argsort(-np.abs(h[pos]))[:4]
            assert list(rows["dimension"]) == list(expected)
            assert rows["value"].to_numpy() == pytest.approx(h[pos, expected], rel=1e-6)
            assert rows["times_median"].iloc[0] == pytest.approx(
                abs(h[pos, expected[0]]) / np.median(np.abs(h))
            )
    ranked = massive_dimensions(top)
    best = top.loc[top["times_median"].idxmax()]
    assert ranked[0] == best["dimension"] and sorted(ranked) == sorted(set(top["dimension"]))
    values = dimension_values(t, ranked[0])
    assert values == pytest.approx(t.hidden_states[:, :, ranked[0]])
    assert values[best["layer"], best["position"]] == pytest.approx(best["value"])
    with pytest.raises(IndexError):
        dimension_values(t, t.hidden_size)
    long = token_table(t, norms, "norm")
    assert len(long) == norms.size and long["norm"].to_numpy() == pytest.approx(norms.ravel())


def test_figures(traces, baseline, encoder):
    t = trace(encoder, "<b>bold</b> claims")
    fig = figures.cls_token_cosine_figure(t, cls_token_cosines(t))
    x = fig.to_dict()["data"][0]["x"]
    assert not any("<b>" in label for label in x) and any("&lt;" in label for label in x)
    assert np.asarray(fig.data[0].z).shape == (t.num_layers + 1, t.seq_len)
    for view in VIEWS:
        summary = figures.cls_summary_figure(cls_summary(t, view, baseline), baseline, view)
        assert any(tr.name.endswith("unrelated sentence") for tr in summary.data)
        comparison = figures.comparison_figure(compare_sentences(traces, view=view, baseline=baseline), view)
        assert sum(tr.name.startswith("sentences") for tr in comparison.data) == 3 * 3
        assert len(figures.anisotropy_figure(baseline, view).data) == len(baseline.references)
    bench = pd.DataFrame(
        [
            dict(layer=layer, pooling=s, spearman=0.1 * layer, spearman_centred=0.0)
            for layer in range(3)
            for s in "ab"
        ]
    )
    assert len(figures.benchmark_figure(bench).data) == 4
    top = top_dimensions(t, 3)
    bars = figures.top_dimensions_figure(top, 2)
    assert [len(b.y) for b in bars.data] == [3, 3]
    assert figures.token_norms_figure(t, token_norms(t)).data[0].zmin == 0.0
    dim = figures.dimension_figure(t, dimension_values(t, 5), 5).data[0]
    assert (
        dim.zmax == pytest.approx(np.abs(t.hidden_states[:, :, 5]).max(), abs=1e-6) and dim.zmin == -dim.zmax
    )
    with pytest.raises(ValueError, match="expected"):
        figures.token_norms_figure(t, token_norms(t)[:, :2])


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "electra", "albert"])
def test_other_model_families(tiny_model_dirs, kind):
    from clsviz import load_encoder

    enc = load_encoder(str(tiny_model_dirs[kind]))
    base = measure_baseline(enc, SAMPLE[:5])
    assert base.table["mean"].between(-1, 1).all()
    assert ("cls_pooler" in base.references) == enc.info.has_pooler
    traces = [trace(enc, s) for s in ("the cat chased a dog", "why is the token always first")]
    for view in VIEWS:
        maps = cls_token_cosines(traces[0], view, base)
        assert maps.shape == (enc.info.num_layers + 1, traces[0].seq_len) and np.isfinite(maps).all()
        assert np.abs(maps).max() <= 2 + 1e-9
        table = compare_sentences(traces, view=view, baseline=base)
        assert table["cosine"].between(-2, 2).all() and len(table) == (enc.info.num_layers + 1) * 3
        summary = cls_summary(traces[1], view, base)
        assert summary["cls_vs_mean_content"].notna().all()
    top = top_dimensions(traces[0], 2)
    assert set(top["token"]) == {traces[0].tokens[traces[0].cls_index], traces[0].tokens[traces[0].sep_index]}
