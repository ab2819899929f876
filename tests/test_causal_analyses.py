"""The analyses behind "Why first?" and "Causal tests": [CLS] moved on one sentence and probed on a
corpus, the causal tests on the typed sentences and on a corpus. Each is checked against the
experiment it declares, called directly; through ``clsviz run``; and through a pickle, as the
app's job worker receives and returns it."""

from __future__ import annotations

import csv
import pickle
from functools import partial

import numpy as np
import pandas as pd
import pytest

from clsviz import cli, trace
from clsviz.analyses import NotApplicable, ParamError, get, run
from clsviz.analyses.sweeps import demo_dimension_means, demo_head_means
from clsviz.corpus import Corpus
from clsviz.experiments import interventions as iv
from clsviz.experiments.moved_cls import position_probe, summarize_probe
from clsviz.experiments.position import VARIANT_LABELS, position_experiment
from tests.test_attention import _arr
from ui import worker

TEXT = "The film was not bad at all."
ROWS = [(f"The {w} was seen near the old barn.", "animal") for w in ("cat", "dog", "horse", "bird", "goat", "cow")]
ROWS += [(f"We had {w} for dinner last night.", "food") for w in ("bread", "soup", "rice", "cake", "pasta", "fish")]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(texts=tuple(t for t, _ in ROWS), labels={"topic": tuple(y for _, y in ROWS)})


@pytest.fixture(scope="module")
def corpus_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("causal-analyses") / "small.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "topic"])
        writer.writerows(ROWS)
    return path


def test_position_reads_like_the_experiment_with_its_notes(tiny_encoder):
    t = trace(tiny_encoder, TEXT)
    result = run("position", tiny_encoder, t, shift=60, replacement="unbelievableness")
    want = position_experiment(tiny_encoder, TEXT, shift=60, replacement="unbelievableness", max_tokens=t.seq_len)
    pd.testing.assert_frame_equal(result.table(), want.table)
    # A shift past the model's 64 positions is cut, and a word of several tokens is said: both as notes.
    assert result.notes == want.notes and len(result.notes) == 2
    assert [name for name, _, _ in result.variants()] == list(VARIANT_LABELS) == list(result.labels)
    lines = result.figure("position.lines").to_dict()
    moved = want.table[want.table["variant"] == "cls_end"].sort_values("layer")["cos_to_standard_cls"]
    drawn = next(d for d in lines["data"] if d["name"] == VARIANT_LABELS["cls_end"] and d["xaxis"] == "x")
    np.testing.assert_allclose(_arr(drawn["y"]).astype(float), np.round(moved, 4), atol=1e-4)


def test_position_probe_reads_the_first_labelled_texts(tiny_encoder, corpus):
    result = run("position.probe", tiny_encoder, corpus, texts=10, folds=2, variants="standard,cls_end")
    # The default label is the corpus's first; the first ten labelled texts are probed.
    want, notes = position_probe(tiny_encoder, corpus.texts[:10], corpus.labels["topic"][:10],
                                 variants=("standard", "cls_end"), folds=2, label_name="topic")  # fmt: skip
    pd.testing.assert_frame_equal(result.table(), want)
    assert result.notes == notes
    assert "topic" in result.figure("position.probe").to_dict()["layout"]["title"]["text"]
    with pytest.raises(ValueError, match="variants: give comma-separated names of standard, cls_end"):
        run("position.probe", tiny_encoder, corpus, variants="standard,sideways")
    with pytest.raises(ValueError, match="no label column 'colour'; its labels: topic"):
        run("position.probe", tiny_encoder, corpus, label="colour")
    with pytest.raises(NotApplicable, match="no label column"):
        run("position.probe", tiny_encoder, Corpus(texts=corpus.texts))


def test_sentence_tests_match_the_sweeps_with_the_demo_means(tiny_encoder):
    t = trace(tiny_encoder, TEXT)
    n = t.seq_len
    heads = run("interventions.heads", tiny_encoder, [t])
    means = iv.head_means(tiny_encoder, iv.demo_sample())  # the demo texts at full length
    want = iv.head_sweep(tiny_encoder, [TEXT], mode="mean", mean_from=means, max_tokens=n)
    np.testing.assert_allclose(heads.table()["effect"], want.table["effect"], rtol=1e-6, atol=1e-9)
    assert heads.finding == want.finding and heads.note.startswith("Rule: A head matters")
    # The means are computed once per model.
    assert demo_head_means(tiny_encoder) is demo_head_means(tiny_encoder)

    massive = run("interventions.massive", tiny_encoder, [t], layer=1)
    dims = iv.find_massive_dimensions(tiny_encoder, [TEXT], 1)["dimension"].tolist()
    dim_means = iv.dimension_means(tiny_encoder, iv.demo_sample(), dims, 1)
    np.testing.assert_allclose(demo_dimension_means(tiny_encoder, tuple(dims), 1), dim_means, rtol=1e-6)
    want = iv.massive_sweep(tiny_encoder, [TEXT], layer=1, dims=dims, mean_from=dim_means, max_tokens=n)
    np.testing.assert_allclose(massive.table()["cosine"], want.table["cosine"], rtol=1e-6)
    pd.testing.assert_frame_equal(massive.attention_table(), want.attention)
    assert massive.summary()[-1] == want.finding

    registers = run("interventions.registers", tiny_encoder, [t], registers=2)
    want = iv.register_sweep(tiny_encoder, [TEXT], ks=(0, 1, 2), max_tokens=n)
    assert list(registers.table()["k"]) == [0, 1, 2]
    np.testing.assert_allclose(registers.table()["cos_to_no_registers"], want.table["cos_to_no_registers"], rtol=1e-6)

    patch = run("interventions.patch", tiny_encoder, t, source="Stock markets fell sharply.")
    profile = iv.patch_profile(tiny_encoder, "Stock markets fell sharply.", TEXT, max_tokens=n)
    pd.testing.assert_frame_equal(patch.table(), profile)
    assert patch.summary() == [iv.summarize_patch_profile(profile)]


def test_sentence_tests_refuse_what_cannot_run(tiny_encoder):
    long = trace(tiny_encoder, " ".join(["word"] * 120))  # cut at the tiny model's 64 tokens: no room left
    with pytest.raises(NotApplicable, match="more than this model's limit of 64"):
        run("interventions.registers", tiny_encoder, [long])
    with pytest.raises(ValueError, match="same sentence"):
        run("interventions.patch", tiny_encoder, trace(tiny_encoder, TEXT), source=TEXT)
    with pytest.raises(ParamError, match="mode of 'interventions.heads' must be one of 'mean', 'zero'"):
        run("interventions.heads", tiny_encoder, [trace(tiny_encoder, TEXT)], mode="half")


def test_causal_corpus_checks_its_sample_before_it_runs(tiny_encoder, corpus):
    analysis = get("causal.corpus")
    # 12 texts in two classes of 6: five folds fit, seven do not.
    assert analysis.validate(tiny_encoder, corpus, label="topic", folds=5)["folds"] == 5
    with pytest.raises(ValueError, match=r"7-fold cross-validation needs at least 14"):
        analysis.validate(tiny_encoder, corpus, label="topic", folds=7)
    with pytest.raises(ValueError, match="no label column 'colour'; its labels: topic"):
        analysis.validate(tiny_encoder, corpus, label="colour")
    with pytest.raises(NotApplicable, match="Patching is read by a probe"):
        analysis.validate(tiny_encoder, corpus, kind="patching")
    analysis.validate(tiny_encoder, corpus, kind="heads")  # no label: effects on [CLS] only


def test_the_jobs_pickle_both_ways(tiny_encoder, corpus):
    """What the runner queues (the analysis and its inputs, the encoder as a reference) and what
    comes back (the result) survive a pickle, and the result is the one computed here."""
    job = partial(run, "causal.corpus", tiny_encoder, corpus, kind="registers", label="topic", texts=12, folds=2,
                  registers=1)  # fmt: skip
    sent = worker.loads(worker.dumps(job))
    assert sent.args[1] is not tiny_encoder and sent.args[1].name == tiny_encoder.name  # loaded again by name
    result = pickle.loads(pickle.dumps(sent()))
    want = iv.register_sweep(tiny_encoder, corpus.texts, corpus.labels["topic"], ks=(0, 1), folds=2, label_name="topic")
    np.testing.assert_allclose(result.table()["accuracy"], want.table["accuracy"])
    pd.testing.assert_frame_equal(result.attention_table(), want.attention)
    assert result.summary()[-1] == want.finding and result.figure_keys() == ("interventions.registers",)
    assert result.figure("interventions.registers").to_dict()["data"]
    t = trace(tiny_encoder, TEXT)
    for name, inputs in (("position", (t,)), ("interventions.knockout", ([t],))):
        made = run(name, tiny_encoder, *inputs)
        back = pickle.loads(pickle.dumps(made))
        pd.testing.assert_frame_equal(back.table(), made.table())
        assert back.summary() == made.summary()


def test_clsviz_run_probes_the_moved_cls(tmp_path, corpus_csv, tiny_encoder, capsys):
    out = tmp_path / "probe.csv"
    args = ["run", "position.probe", "--corpus", str(corpus_csv), "--model", str(tiny_encoder.info.source),
            "--label", "topic", "--texts", "10", "--folds", "2", "--variants", "standard,mask", "--out", str(out), "-q"]  # fmt: skip
    assert cli.main(args) == 0
    want, _ = position_probe(tiny_encoder, [t for t, _ in ROWS[:10]], [y for _, y in ROWS[:10]],
                             variants=("standard", "mask"), folds=2, label_name="topic")  # fmt: skip
    saved = pd.read_csv(out)
    np.testing.assert_allclose(saved["accuracy"], want["accuracy"], atol=1e-9)
    assert list(saved["variant"].unique()) == ["standard", "mask"]
    assert capsys.readouterr().out.strip() == summarize_probe(want)  # the summary sentence, with its intervals
    assert cli.main(["run", "position.probe", "--corpus", str(corpus_csv), "--variants", "sideways", "-q"]) == 2
    assert "variants: give comma-separated names" in capsys.readouterr().err


def test_clsviz_run_the_causal_tests(tmp_path, corpus_csv, tiny_encoder, capsys):
    model = str(tiny_encoder.info.source)
    out = tmp_path / "regs.csv"
    assert cli.main(["run", "interventions.registers", "--text", TEXT, "--model", model, "--registers", "1",
                     "--out", str(out), "-q"]) == 0  # fmt: skip
    want = iv.register_sweep(tiny_encoder, [TEXT], ks=(0, 1), max_tokens=trace(tiny_encoder, TEXT).seq_len)
    assert capsys.readouterr().out.strip().splitlines()[-1] == want.finding
    np.testing.assert_allclose(pd.read_csv(out)["register_share"], want.table["register_share"], atol=1e-6)

    out = tmp_path / "heads.csv"
    assert cli.main(["run", "causal.corpus", "--corpus", str(corpus_csv), "--model", model, "--kind", "heads",
                     "--mode", "zero", "--texts", "8", "--out", str(out), "-q"]) == 0  # fmt: skip
    want = iv.head_sweep(tiny_encoder, [t for t, _ in ROWS[:8]], mode="zero")
    np.testing.assert_allclose(pd.read_csv(out)["effect"], want.table["effect"], rtol=1e-6)
    assert want.finding in capsys.readouterr().out

    long = " ".join(["word"] * 120)
    assert cli.main(["run", "interventions.registers", "--text", long, "--model", model, "-q"]) == 2
    assert "does not apply here" in capsys.readouterr().err
