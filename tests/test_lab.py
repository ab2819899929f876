"""The pretraining lab (clsviz.lab): tiny configs on the shipped Austen excerpt, a few steps each."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from clsviz import load_encoder, trace
from clsviz.corpus import demo_corpus
from clsviz.heads import classifier_lens
from clsviz.lab import (
    METRIC_COLUMNS,
    LabConfig,
    LabConfigError,
    LabDataError,
    excerpt_texts,
    open_run,
    pretrain,
)
from clsviz.lab.measures import probe_set
from clsviz.progress import Cancelled
from clsviz.provenance import model_profile

TINY_LAB = dict(layers=2, hidden=32, heads=2, intermediate=64, max_tokens=40, vocab_size=600, batch_size=8)


@pytest.fixture(scope="module")
def texts():
    return excerpt_texts()


@pytest.fixture(scope="module")
def small_heldout():
    corpus = demo_corpus()
    return corpus.subset(list(range(70)), name="demo (70 texts)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, texts, small_heldout):
    """One short run per layout; first+nsp is measured at two checkpoints."""
    root = tmp_path_factory.mktemp("lab")
    made = {}
    for summary, objective, steps, checkpoints in (
        ("first", "nsp", 6, 2), ("last", "sop", 3, 0), ("none", "nsp", 3, 0), ("none", None, 3, 0)
    ):  # fmt: skip
        made[(summary, objective)] = pretrain(
            texts, summary=summary, sentence_objective=objective, config=TINY_LAB, steps=steps, seed=0,
            out=root / f"{summary}-{objective}", checkpoints=checkpoints, heldout=small_heldout, threads=1,
        )  # fmt: skip
    return made


def test_mlm_loss_falls(tmp_path, texts):
    cfg = dict(TINY_LAB, learning_rate=3e-3, warmup=0.0)
    threads = torch.get_num_threads()
    run = pretrain(texts, summary="first", sentence_objective=None, config=cfg, steps=80, out=tmp_path / "m",
                   checkpoints=0, log_every=4, threads=1)  # fmt: skip
    assert torch.get_num_threads() == threads  # the thread setting is the run's only
    curve = run.metrics[run.metrics["metric"] == "mlm_loss"].sort_values("step")["value"].to_numpy()
    assert len(curve) == 20  # a curve, not two points
    # A fresh model starts near the uniform guess ln(vocabulary) and must learn at least the word frequencies.
    vocab = len(load_encoder(str(run.folder)).tokenizer)
    assert curve[:3].mean() == pytest.approx(np.log(vocab), abs=0.5)
    assert curve[-5:].mean() < curve[0] - 0.5


@pytest.mark.parametrize("summary", ["first", "last", "none"])
def test_summary_token_layout(runs, summary):
    objective = {"first": "nsp", "last": "sop", "none": "nsp"}[summary]
    enc = load_encoder(str(runs[(summary, objective)].folder))
    t = trace(enc, "It is a truth universally acknowledged. She smiled.")
    assert enc.info.summary == summary
    profile = model_profile(enc)  # what the published findings read as their preconditions
    assert (profile.training, profile.sentence_objective) == ("pre-trained", objective)
    assert profile.summary_position == {"first": "first", "last": "last", "none": "absent"}[summary]
    if summary == "first":
        assert t.cls_index == 0 and t.tokens[0] == "[CLS]"
    elif summary == "last":
        assert t.cls_index == t.seq_len - 1 and t.tokens[-1] == "[CLS]" and t.tokens[-2] == "[SEP]"
    else:
        assert t.cls_index is None and "[CLS]" not in t.tokens and t.tokens[-1] == "[SEP]"


def _own_sentence_logits(folder, text: str, summary: str) -> np.ndarray:
    """The sentence head computed from the saved weights with transformers' own modules."""
    from transformers import AutoTokenizer, BertForPreTraining

    model = BertForPreTraining.from_pretrained(folder).eval()
    ids = AutoTokenizer.from_pretrained(folder)(text, return_tensors="pt")
    with torch.no_grad():
        out = model(**ids, output_hidden_states=True)
        if summary == "first":  # BertForPreTraining reads position 0 itself
            return out.seq_relationship_logits[0].numpy()
        last = out.hidden_states[-1][0]
        vec = last[-1] if summary == "last" else last.mean(dim=0)
        return model.cls.seq_relationship(torch.tanh(model.bert.pooler.dense(vec)))[None][0].numpy()


@pytest.mark.parametrize("summary,objective", [("first", "nsp"), ("last", "sop"), ("none", "nsp")])
def test_sentence_head_through_the_lens_equals_the_models_logits(runs, summary, objective):
    folder = str(runs[(summary, objective)].folder)
    enc = load_encoder(folder)
    text = "Mr. Bennet replied that he had not. But it is, returned she."
    lens = classifier_lens(enc, trace(enc, text))
    assert lens.shape == (3, 2)
    assert (
        enc.classifier.labels == ({"nsp": ("is next", "random"), "sop": ("in order", "swapped")}[objective])
    )
    np.testing.assert_allclose(lens[-1], _own_sentence_logits(folder, text, summary), rtol=1e-4, atol=1e-5)


def test_the_findings_caveat_reads_the_runs_own_held_out_accuracy(runs):
    run = runs[("first", "nsp")]  # measured at two checkpoints: its metrics hold the held-out NSP accuracy
    held = run.metrics[run.metrics["metric"] == "heldout_nsp_accuracy"].sort_values("step").iloc[-1]
    note = model_profile(load_encoder(str(run.folder))).objective_note
    assert f"reached {held['value']:.0%} (95% interval {held['low']:.0%}–{held['high']:.0%})" in note
    assert f"at step {int(held['step'])}" in note
    assert ("not clearly above chance" in note) == (held["low"] <= 0.5)
    unmeasured = runs[("last", "sop")]  # no checkpoints: nothing recorded, and it says so
    assert "recorded no held-out accuracy of its SOP head" in model_profile(load_encoder(str(unmeasured.folder))).objective_note


def test_saved_folder_loads_as_bert_for_pretraining_with_no_missing_weights(runs):
    from transformers import BertForMaskedLM, BertForPreTraining

    folder = runs[("first", "nsp")].folder
    _, info = BertForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.csv", "lab_run.json"} <= names
    layout = BertForPreTraining.config_class.from_pretrained(folder).clsviz_pretraining
    assert layout == {
        "summary": "first",
        "sentence_objective": "nsp",
        "corpus": "179 texts",
        "steps": 6,
        "seed": 0,
    }
    # Without a sentence objective the folder is a masked-LM model: no untrained sentence head saved.
    mlm_only = runs[("none", None)].folder
    _, info = BertForMaskedLM.from_pretrained(mlm_only, output_loading_info=True)
    assert not info["missing_keys"]
    assert load_encoder(str(mlm_only)).classifier is None


def test_the_mlm_head_serves_the_inversion_experiment(runs):
    from transformers import AutoTokenizer, BertForPreTraining

    from clsviz.experiments.inversion import load_mlm_head

    folder = str(runs[("last", "sop")].folder)
    enc = load_encoder(folder)
    head = load_mlm_head(enc)
    assert head.available
    ids = AutoTokenizer.from_pretrained(folder)("She smiled at him.", return_tensors="pt")
    full = BertForPreTraining.from_pretrained(folder).eval()
    with torch.no_grad():
        out = full(**ids, output_hidden_states=True)
        mine = head.logits(out.hidden_states[-1][0])
    np.testing.assert_allclose(mine.numpy(), out.prediction_logits[0].numpy(), rtol=1e-4, atol=1e-4)


def _cancel_when(pattern: str):
    event = threading.Event()

    def progress(done, total, message=""):
        if pattern in message:
            event.set()

    return event, progress


@pytest.mark.parametrize("moment", ["step 2/", "saving the model"])
def test_a_cancelled_run_stops_and_leaves_no_model(tmp_path, texts, moment):
    cancel, progress = _cancel_when(moment)
    steps_seen = []

    def watch(done, total, message=""):
        steps_seen.append(done)
        progress(done, total, message)

    out = tmp_path / "cancelled"
    with pytest.raises(Cancelled):
        pretrain(
            texts,
            config=TINY_LAB,
            steps=8,
            out=out,
            checkpoints=0,
            log_every=1,
            progress=watch,
            cancel=cancel,
        )
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging copy left beside it either
    if moment.startswith("step"):
        assert max(steps_seen) == 2  # stopped at the next step, not at the end


def test_metrics_table(runs, small_heldout):
    run = runs[("first", "nsp")]
    m = run.metrics
    assert list(m.columns) == METRIC_COLUMNS
    names = set(m["metric"])
    assert {
        "mlm_loss",
        "mlm_accuracy",
        "nsp_loss",
        "nsp_accuracy",
        "heldout_mlm_loss",
        "heldout_nsp_accuracy",
    } <= names
    assert {"probe_cls", "probe_mean", "cos_cls_mean", "attention_to_cls", "attention_to_sep", "massive_ratio",
            "anisotropy", "cka_to_final"} <= names  # fmt: skip
    assert sorted(set(m.loc[m["metric"] == "probe_cls", "step"])) == [0, 6]
    probes = m[m["metric"].isin(["probe_cls", "probe_mean"])]
    assert sorted(set(probes["layer"])) == [0, 1, 2]
    assert (probes["low"] <= probes["value"] + 1e-12).all() and (
        probes["value"] <= probes["high"] + 1e-12
    ).all()
    assert sorted(set(m.loc[m["metric"] == "attention_to_cls", "layer"])) == [1, 2]  # blocks
    seps = m[m["metric"] == "attention_to_sep"]
    assert (seps["low"] <= seps["value"]).all() and (seps["value"] <= seps["high"]).all()
    cka_final = m[(m["metric"] == "cka_to_final") & (m["step"] == 6)]["value"]
    np.testing.assert_allclose(cka_final, 1.0, atol=1e-6)
    # The sink, recomputed from traces of the saved model on the same held-out texts.
    enc = load_encoder(str(run.folder))
    probe = probe_set(small_heldout, "topic", seed=0)
    shares = [trace(enc, t).attention_to(0, include_self=False).mean(axis=1) for t in probe.texts]
    recorded = m[(m["metric"] == "attention_to_cls") & (m["step"] == 6)].sort_values("layer")
    np.testing.assert_allclose(recorded["value"], np.mean(shares, axis=0), rtol=1e-4, atol=1e-6)
    # ... and its 95% interval: a bootstrap over those texts.
    from clsviz.metrics import bootstrap_interval

    for block, row in zip((1, 2), recorded.itertuples()):
        _, low, high = bootstrap_interval(np.mean, np.asarray(shares)[:, block - 1], seed=0)
        assert row.low == pytest.approx(low, abs=1e-5) and row.high == pytest.approx(high, abs=1e-5)
        assert row.low < row.value < row.high


def test_a_run_reopens_from_its_folder_with_figures_and_summary(runs):
    run = runs[("first", "nsp")]
    again = open_run(run.folder)
    assert again.layout["variant"] == "first+nsp"
    np.testing.assert_allclose(again.metrics["value"], run.metrics["value"], rtol=1e-9)
    assert set(again.figures()) == {"lab.curves", "lab.probe", "lab.sink", "lab.sentence"}
    sentences = again.summary()
    assert sentences[0].startswith("first+nsp: 6 steps")
    assert any("95% CI" in s and "probe" in s for s in sentences)


def test_no_summary_token_leaves_out_its_rows(tmp_path, texts, small_heldout):
    run = pretrain(texts, summary="none", sentence_objective=None, config=TINY_LAB, steps=2, out=tmp_path / "n",
                   checkpoints=1, heldout=small_heldout)  # fmt: skip
    names = set(run.metrics["metric"])
    assert "probe_mean" in names and "attention_to_sep" in names
    assert not names & {"probe_cls", "attention_to_cls", "cos_cls_mean", "nsp_loss"}


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(summary="middle"), ["'first'", "'last'", "'none'"]),
        (dict(sentence_objective="mlm+"), ["'nsp'", "'sop'", "None"]),
        (dict(config=dict(layers=2, colour=3)), ["colour", "max_tokens"]),
        (dict(config=dict(hidden=30, heads=4)), ["multiple of 'heads'", "hidden=32"]),
        (dict(config=dict(max_tokens=4)), ["'max_tokens'", "8 to 512"]),
        (dict(steps=0), ["steps", "1 to"]),
    ],
)
def test_bad_settings_say_what_is_allowed(tmp_path, texts, kwargs, words):
    with pytest.raises(ValueError) as err:
        pretrain(texts, out=tmp_path / "x", **kwargs)
    for word in words:
        assert word in str(err.value)
    assert not (tmp_path / "x").exists()


def test_texts_must_be_running_text(tmp_path):
    with pytest.raises(LabDataError, match="two or more consecutive sentences"):
        pretrain(["hello", "", "world"], config=TINY_LAB, steps=1, out=tmp_path / "x", checkpoints=0)
    with pytest.raises(LabDataError, match="not one string"):
        pretrain("One text. Two sentences.", config=TINY_LAB, steps=1, out=tmp_path / "y", checkpoints=0)


def test_an_existing_folder_is_never_overwritten(tmp_path, texts):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        pretrain(texts, config=TINY_LAB, steps=1, out=tmp_path / "taken", checkpoints=0)
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_config_accepts_a_dict_or_a_dataclass():
    assert LabConfig.from_any({"layers": 3}).layers == 3
    assert LabConfig.from_any(LabConfig(hidden=64)).hidden == 64
    with pytest.raises(LabConfigError, match="must be a dict"):
        LabConfig.from_any([("layers", 2)])


# --- a model without a summary token: every view that needs one says so ---------------------------


@pytest.fixture(scope="module")
def no_summary(runs):
    enc = load_encoder(str(runs[("none", "nsp")].folder))
    return enc, trace(enc, "She smiled. He did not.")


def test_views_that_need_a_summary_token_say_so(no_summary, runs):
    from clsviz import extract, pool
    from clsviz.attention import summarize
    from clsviz.experiments.dynamics import gradient_flow
    from clsviz.experiments.interventions import knockout
    from clsviz.narrative import findings
    from clsviz.report import build_report
    from clsviz.similarity import cls_token_cosines
    from clsviz.tracing import NoSummaryToken

    enc, t = no_summary
    calls = {
        "pool": lambda: pool(t, "cls"),
        "cls": lambda: t.cls(),
        "extract": lambda: extract(enc, ["One. Two.", "Three."], poolings=("cls", "mean")),
        "attention": lambda: summarize(t),
        "similarity": lambda: cls_token_cosines(t),
        "findings": lambda: findings(t),
        "report": lambda: build_report(t, enc),
        "knockout": lambda: knockout(enc, "She smiled."),
        "gradient flow": lambda: gradient_flow(enc, "She smiled.", pooling="cls"),
    }
    for name, call in calls.items():
        with pytest.raises(NoSummaryToken, match="pretrained without one") as err:
            call()
        assert "mean" in str(err.value), name
    # What does not need one still works: the mean, the gradient flow through the mean.
    np.testing.assert_allclose(pool(t, "mean"), t.hidden(-1).mean(axis=0), rtol=1e-5, atol=1e-6)
    assert extract(enc, ["One. Two.", "Three."], poolings=("mean",)).vectors.shape == (2, 3, 1, 32)
    assert gradient_flow(enc, "She smiled.", pooling="mean").shape == (3, trace(enc, "She smiled.").seq_len)


def test_measures_without_a_summary_token(no_summary, runs):
    from clsviz.attention import token_categories
    from clsviz.baseline import measure_baseline
    from clsviz.compare import compare_encoders
    from clsviz.norms import top_dimensions

    enc, t = no_summary
    cats = token_categories(t.tokens, t.special_mask, t.cls_index)
    assert 0 not in cats and cats[-1] == 1  # no token is [CLS]; the closing [SEP] is one
    base = measure_baseline(enc, ["She smiled.", "He did not.", "It rained all day."])
    assert "cls" not in base.references and {"token", "mean"} <= set(base.references)
    assert set(top_dimensions(t)["role"]) == {"sep"}
    from clsviz.mixing.context import measure

    mix = measure(enc, t, "attention")
    with pytest.raises(ValueError, match="pretrained without one"):
        mix.row()
    assert mix.row(0).shape == (2, t.seq_len)
    other = load_encoder(str(runs[("first", "nsp")].folder))
    result = compare_encoders(
        enc, other, ["She smiled.", "He did not.", "It rained."], readings=("cls", "mean")
    )
    assert "cls" in result.skipped and "pretrained without one" in result.skipped["cls"]


# --- the corpus and the sentence pairs -------------------------------------------------------------


def test_book_chapters_and_running_text(tmp_path):
    from clsviz.lab.books import book_chapters, read_running_text, write_running_text

    lines = ["EMMA", "", "By Jane Austen", "", "VOLUME I", "", "CHAPTER I", "", "Emma Woodhouse, handsome,",
             "clever, and _rich_.", "", "She was the youngest.", "", "CHAPTER II", "", "Mr. Weston was a native.",
             "", "THE END"]  # fmt: skip
    chapters = book_chapters(lines)
    assert chapters == [["Emma Woodhouse, handsome, clever, and rich.", "She was the youngest."],
                        ["Mr. Weston was a native."]]  # fmt: skip
    path = write_running_text(chapters, tmp_path / "book.txt")
    assert read_running_text(path) == [*chapters[0], "", *chapters[1]]
    assert list(tmp_path.iterdir()) == [path]


def test_the_shipped_excerpt_matches_its_data_card():
    from pathlib import Path

    texts = excerpt_texts()
    card = (Path(__file__).parent.parent / "clsviz/data/README.md").read_text(encoding="utf-8")
    paragraphs, chapters = sum(1 for t in texts if t), texts.count("") + 1
    assert chapters == 6 and f"({paragraphs} paragraphs, 42 kB)" in card
    assert texts[0].startswith("It is a truth universally acknowledged")


def test_sentences_and_documents():
    from clsviz.lab.data import documents, split_sentences

    assert split_sentences('"My dear Mr. Bennet," said his lady. Mr. Bennet replied that he had not! Why? J. R. smiled.') == [
        '"My dear Mr. Bennet," said his lady.', "Mr. Bennet replied that he had not!", "Why?", "J. R. smiled."]  # fmt: skip
    docs = documents(["One here. Two there.", "Three.", "", "  ", "Four. Five."])
    assert docs == [["One here.", "Two there.", "Three."], ["Four.", "Five."]]
    corpus = demo_corpus().subset([0, 1, 2, 3])
    assert len(documents(corpus)) == 1


@pytest.mark.parametrize("objective", ["nsp", "sop", None])
def test_sentence_pairs_follow_the_objective(objective):
    from clsviz.lab.data import PairSampler

    docs = [[f"d{d}s{i}." for i in range(8)] for d in range(4)]
    lengths = [[3] * 8 for _ in docs]
    sampler = PairSampler(docs, lengths, budget=12, objective=objective, rng=np.random.default_rng(0))
    where = {s: (d, i) for d, doc in enumerate(docs) for i, s in enumerate(doc)}
    pairs = sampler.draws(400)
    labels = np.array([label for _, _, label in pairs])
    if objective is None:
        assert set(labels) == {-1}
    else:
        assert set(labels) == {0, 1} and abs(labels.mean() - 0.5) < 0.1
    for a, b, label in pairs:
        (da, ia), (db, ib) = where[a.split()[-1]], where[b.split()[0]]
        a_first, b_last = where[a.split()[0]], where[b.split()[-1]]
        if label in (-1, 0):  # B continues A in the same document
            assert da == db and ib == ia + 1
        elif objective == "nsp":  # B from another document
            assert db != da
        else:  # SOP: the same two runs, swapped
            assert a_first[0] == b_last[0] and b_last[1] + 1 == a_first[1]
        assert 3 * (len(a.split()) + len(b.split())) <= 12


def test_a_set_of_variants_reports_one_progress(tmp_path, texts):
    from clsviz.lab import pretrain_set

    seen = []
    runs = pretrain_set(texts, ["first+mlm", "none+mlm"], tmp_path / "set", steps=2, checkpoints=0, config=TINY_LAB,
                        threads=1, progress=lambda d, t, m="": seen.append((d, t, m)))  # fmt: skip
    assert [r.variant for r in runs] == ["first+mlm", "none+mlm"]
    assert [r.folder.name for r in runs] == ["first-mlm", "none-mlm"]
    assert seen[-1][:2] == (4, 4) and seen[-1][2].startswith("[2/2] none+mlm:")
    assert any(m.startswith("[1/2] first+mlm: step 2/2") and d == 2 for d, _, m in seen)
    with pytest.raises(ValueError, match="SUMMARY\\+OBJECTIVE"):
        pretrain_set(texts, ["first"], tmp_path / "bad", steps=1, checkpoints=0)


def test_tokenizer_layouts_share_one_vocabulary(texts):
    from clsviz.lab.data import documents, train_tokenizer

    docs = documents(texts[:40])
    first, last, none = (train_tokenizer(docs, 400, s, 32) for s in ("first", "last", "none"))
    assert first.get_vocab() == last.get_vocab() == none.get_vocab()
    assert len(first) <= 400
    words = first("Mr. Bennet smiled.", add_special_tokens=False)["input_ids"]
    cls, sep = first.cls_token_id, first.sep_token_id
    assert first("Mr. Bennet smiled.")["input_ids"] == [cls, *words, sep]
    assert last("Mr. Bennet smiled.")["input_ids"] == [*words, sep, cls]
    assert none("Mr. Bennet smiled.")["input_ids"] == [*words, sep]
    assert last("She.", "He.")["token_type_ids"][-1] == 1  # the summary token closes segment B


def _tiny_run_in_child(out: str) -> str:
    return str(pretrain(excerpt_texts(), config=TINY_LAB, steps=2, out=out, checkpoints=0, threads=1).folder)


def test_a_run_in_another_process(tmp_path, monkeypatch):
    """The app's job worker is a process of its own (not a DataLoader's): the masks must still draw."""
    import multiprocessing
    import sys
    import types
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    # A spawned child re-runs the parent's __main__ file; after an AppTest script ran in this
    # process that is the script's temporary file, so the child starts from a bare __main__.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        folder = pool.submit(_tiny_run_in_child, str(tmp_path / "child")).result(timeout=600)
    assert (Path(folder) / "model.safetensors").is_file()
