"""Published findings checked live (clsviz.literature): the data file, the verdict rule on planted
values, every measurement on the bundled model and on tiny models of each family, numbers
against independent computations, session results and the optional modules."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from clsviz import load_encoder
from clsviz.corpus import demo_corpus, demo_pairs
from clsviz.literature import (
    CLAIM_FIELDS,
    COLUMNS,
    DIFFERS,
    MEASURED,
    MEASURES,
    NOT_HERE_YET,
    NOT_MEASURABLE,
    NOT_YET,
    REPRODUCES,
    VERDICTS,
    ClaimsFileError,
    Context,
    Measurement,
    check_claims,
    claims_html,
    count_verdicts,
    describe_elsewhere,
    judge,
    load_claims,
    matching_blocks,
    measures,
    parse_claims,
    peak_depth,
    ranking_numbers,
    sample_texts,
    verdict,
    with_elsewhere,
)
from clsviz.literature import external as ext
from tests.conftest import TINY_KINDS

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(sample_size=140, attention_sample=6, baseline_sample=24)


def _claim(key: str):
    return next(c for c in load_claims() if c.key == key)


# --- the data file --------------------------------------------------------------------------------


def test_the_data_file_parses_with_every_field():
    raw = tomllib.loads((ROOT / "clsviz" / "data" / "literature.toml").read_text(encoding="utf-8"))["claim"]
    claims = load_claims()
    assert len(claims) == len(raw) >= 9
    for entry, claim in zip(raw, claims):
        assert set(CLAIM_FIELDS) <= set(entry), claim.key
        for name in ("claim", "source", "reference", "model", "published", "unit", "protocol", "here"):
            assert str(getattr(claim, name)).strip(), (claim.key, name)
        assert claim.url.startswith("https://"), claim.key
        assert claim.measure in MEASURES, claim.key
        assert all(p.startswith("pages/") and p.endswith(".py") for p in claim.pages), claim.key
    keys = [c.key for c in claims]
    assert len(set(keys)) == len(keys)
    # The published numbers as numbers, where the paper gives them.
    sts = _claim("sts_cls_vs_mean").values
    assert (sts["cls_average"], sts["mean_average"], sts["cls_stsb"], sts["mean_stsb"]) == (29.19, 54.81, 16.50, 46.35)
    assert _claim("sep_attention").params == {"first_layer": 6, "last_layer": 10, "of_layers": 12}


def test_the_data_file_ships_with_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "data/*.toml" in config["tool"]["setuptools"]["package-data"]["clsviz"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[claim]]\nkey = 'a'\n", "lacks field"),
        ("not toml = = 1", "not valid TOML"),
        ("title = 'no claims'", "no [[claim]]"),
    ],
)
def test_a_broken_data_file_says_what_is_wrong(text, message):
    with pytest.raises(ClaimsFileError, match=re.escape(message)):
        parse_claims(text)


def _file_with(**changes) -> str:
    raw = (ROOT / "clsviz" / "data" / "literature.toml").read_text(encoding="utf-8")
    data = tomllib.loads(raw)["claim"][:2]
    data[0].update(changes)
    lines = []
    for entry in data:
        lines.append("[[claim]]")
        for k, v in entry.items():
            lines.append(f"{k} = {_toml(v)}")
    return "\n".join(lines)


def _toml(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"


def test_the_data_file_round_trips_and_refuses_bad_entries():
    assert [c.key for c in parse_claims(_file_with())] == ["sts_cls_vs_mean", "sep_attention"]
    with pytest.raises(ClaimsFileError, match="'sts_cls_vs_mean': the field 'source' is empty"):
        parse_claims(_file_with(source=" "))
    with pytest.raises(ClaimsFileError, match="check kind 'about'"):
        parse_claims(_file_with(checks=[{"kind": "about", "number": "x"}]))
    with pytest.raises(ClaimsFileError, match="keys repeat"):
        parse_claims(_file_with(key="sep_attention"))


# --- the verdict on planted values ----------------------------------------------------------------

AT_LEAST = [{"kind": "at_least", "number": "share", "threshold": 0.5, "label": "the share", "format": ".0%"}]
INSIDE = [{"kind": "inside", "number": "ratio", "low": 0.8, "high": 1.2, "label": "the ratio", "format": ".2f"}]
GREATER = [{"kind": "greater", "number": "mean", "than": "cls", "margin": 10.0, "interval": True,
            "label": "mean", "than_label": "[CLS]", "format": ".1f"}]  # fmt: skip
ORDERED = [{"kind": "ordered", "numbers": ["a", "b", "c"], "labels": ["surface", "syntax", "semantics"]}]


@pytest.mark.parametrize(
    "checks, numbers, expected",
    [
        (AT_LEAST, {"share": 0.55}, REPRODUCES),
        (AT_LEAST, {"share": 0.5}, REPRODUCES),
        (AT_LEAST, {"share": 0.02}, DIFFERS),
        (AT_LEAST, {"share": float("nan")}, NOT_MEASURABLE),
        (AT_LEAST, {}, NOT_MEASURABLE),
        (INSIDE, {"ratio": 1.0}, REPRODUCES),
        (INSIDE, {"ratio": 1.3}, DIFFERS),
        (INSIDE, {"ratio": 0.7}, DIFFERS),
        # The published numbers themselves, with tight intervals: far apart, no overlap.
        (GREATER, {"mean": 54.81, "mean_low": 50, "mean_high": 59, "cls": 29.19, "cls_low": 25, "cls_high": 33}, REPRODUCES),
        # The right direction but too small a gap, or overlapping intervals, or the wrong direction.
        (GREATER, {"mean": 35, "mean_low": 33, "mean_high": 37, "cls": 29, "cls_low": 27, "cls_high": 31}, DIFFERS),
        (GREATER, {"mean": 55, "mean_low": 20, "mean_high": 80, "cls": 29, "cls_low": 10, "cls_high": 45}, DIFFERS),
        (GREATER, {"mean": 29, "mean_low": 25, "mean_high": 33, "cls": 55, "cls_low": 50, "cls_high": 59}, DIFFERS),
        (GREATER, {"mean": 55, "cls": 29}, NOT_MEASURABLE),
        (ORDERED, {"a": 0.2, "b": 0.5, "c": 0.8}, REPRODUCES),
        (ORDERED, {"a": 0.2, "b": 0.2, "c": 0.8}, REPRODUCES),
        (ORDERED, {"a": 0.2, "b": 0.8, "c": 0.5}, DIFFERS),
        (ORDERED, {"a": 0.5, "b": 0.5, "c": 0.5}, DIFFERS),
        (ORDERED, {"a": 0.8, "b": 0.5, "c": 0.2}, DIFFERS),
        ([], {"x": 1.0}, NOT_MEASURABLE),
    ],
)
def test_the_verdict_on_planted_values(checks, numbers, expected):
    result, reason = verdict(checks, numbers)
    assert result == expected
    assert reason and "nan" not in reason


def test_the_reason_says_the_numbers_and_names_what_failed_first():
    result, reason = verdict(AT_LEAST + INSIDE, {"share": 0.6, "ratio": 2.0})
    assert result == DIFFERS
    assert reason.startswith("the ratio is 2.00, outside the published range 0.80–1.20")
    assert "the share is 60%, at least 50%" in reason
    _, reason = verdict(GREATER, {"mean": 35, "mean_low": 33, "mean_high": 37, "cls": 29, "cls_low": 27, "cls_high": 31})
    assert "ahead by only 6.0, not more than 10.0" in reason
    _, reason = verdict(GREATER, {"mean": 29, "mean_low": 25, "mean_high": 33, "cls": 55, "cls_low": 50, "cls_high": 59})
    assert "not ahead" in reason and "intervals do not overlap" in reason
    _, reason = verdict(ORDERED, {"a": 0.2, "b": 0.8, "c": 0.5})
    assert reason == "surface 0.2, syntax 0.8, semantics 0.5: not in the published order"


@pytest.mark.parametrize("share, expected", [(0.62, REPRODUCES), (0.51, REPRODUCES), (0.49, DIFFERS), (0.03, DIFFERS)])
def test_the_shipped_rules_on_planted_values(share, expected):
    """Clark et al.: more than half the attention on [SEP] in the matching layers."""
    claim = _claim("sep_attention")
    result, reason = judge(claim, Measurement(MEASURED, "v", {"sep_share": share}))
    assert result == expected
    assert f"{share:.0%}" in reason and "more than half" in reason


def test_a_row_that_was_not_measured_keeps_its_status_and_reason():
    claim = _claim("finetuning_top_layers")
    assert judge(claim, Measurement(NOT_YET, notes=("fine-tune a copy first",))) == (NOT_YET, "fine-tune a copy first.")
    assert judge(claim, Measurement(MEASURED, "v", {})) [0] == NOT_MEASURABLE


def test_layers_map_by_relative_depth():
    assert matching_blocks(6, 10, 12, 12) == [6, 7, 8, 9, 10]
    assert matching_blocks(6, 10, 12, 6) == [3, 4, 5]
    assert matching_blocks(6, 10, 12, 24) == list(range(12, 21))
    assert matching_blocks(6, 10, 12, 2) == [1]
    assert matching_blocks(6, 10, 12, 1) == []


def test_the_peak_is_the_first_layer_near_the_best():
    assert peak_depth([0.3, 0.9, 0.91, 0.92], tolerance=0.02) == (1, 1 / 3)
    assert peak_depth([0.3, 0.5, 0.7, 0.92], tolerance=0.02) == (3, 1.0)
    with pytest.raises(ValueError, match="at least two layers"):
        peak_depth([0.5])


def test_the_scoreboard_numbers_take_the_weaker_whole_block_measure():
    ranking = pd.DataFrame({"measure": ["value_zeroing", "alti", "attention", "random"], "aopc": [0.3, 0.2, 0.1, 0.05]})
    assert ranking_numbers(ranking) == {"attention": 0.1, "whole_block": 0.2}
    assert ranking_numbers(ranking[ranking["measure"] != "alti"]) == {"attention": 0.1, "whole_block": 0.3}
    assert "whole_block" not in ranking_numbers(ranking[ranking["measure"].isin(["attention", "random"])])


# --- the whole table ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled_table(encoder):
    pairs = demo_pairs().iloc[::4].reset_index(drop=True)
    return check_claims(encoder, pairs=pairs, **SMALL)


def test_every_claim_is_checked_on_the_bundled_model(bundled_table):
    t = bundled_table
    assert list(t.columns) == list(COLUMNS)
    assert list(t["key"]) == [c.key for c in load_claims()]
    assert set(t["verdict"]) <= set(VERDICTS)
    assert t["reason"].str.len().min() > 20
    measured = t[t["verdict"].isin([REPRODUCES, DIFFERS])]
    assert {"sts_cls_vs_mean", "sep_attention", "value_norm_specials", "anisotropy", "massive_activations",
            "layer_hierarchy"} <= set(measured["key"])  # fmt: skip
    assert (measured["this_model"].str.len() > 0).all() and (measured["sample"].str.len() > 0).all()
    row = t.set_index("key")
    # 6 blocks: layers 6–10 of 12 are blocks 3–5, and the row says so.
    assert "blocks 3–5" in row.loc["sep_attention", "reason"]
    assert row.loc["finetuning_top_layers", "verdict"] == NOT_YET
    assert "How does [CLS] learn?" in row.loc["finetuning_top_layers", "reason"]
    for key, name in (("massive_ablation", "massive_sweep"), ("faithful_mixing", "rank_measures")):
        expected = {NOT_HERE_YET} if ext.optional(name) is None else {REPRODUCES, DIFFERS, NOT_MEASURABLE}
        assert row.loc[key, "verdict"] in expected
    assert row.loc["inversion", "verdict"] == NOT_MEASURABLE
    assert row.loc["inversion", "this_model"].startswith("lower bounds:")
    # The bundled model is no off-the-shelf BERT, and the STS row says why.
    assert "trained for sentence similarity with mean pooling" in row.loc["sts_cls_vs_mean", "reason"]
    assert all(s.startswith(src) for s, src in zip(t["sentence"], t["source"]))


def _by_hand_last_layer(encoder, texts):
    """[CLS] and mean (every token the mask covers, as sentence-transformers) of the last layer,
    straight from the model on one padded batch."""
    import torch

    with torch.inference_mode():
        ids = encoder.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True, max_length=128)
        last = encoder.model(**ids).last_hidden_state.double()
        mask = ids["attention_mask"].double()[:, :, None]
        mean = (last * mask).sum(1) / mask.sum(1)
    return last[:, 0].numpy(), mean.numpy()


def test_the_sts_numbers_match_an_independent_computation(encoder):
    from scipy.stats import spearmanr

    pairs = demo_pairs().iloc[::3].reset_index(drop=True)
    found = measures.sts_gap(_claim("sts_cls_vs_mean"), Context(encoder, None, pairs, {}))
    assert found.status == MEASURED
    texts = list(pairs["sentence1"]) + list(pairs["sentence2"])
    cls, mean = _by_hand_last_layer(encoder, texts)
    n = len(pairs)
    for name, vecs in (("cls", cls), ("mean", mean)):
        a, b = vecs[:n], vecs[n:]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        rho = 100 * spearmanr(cos, pairs["score"]).statistic
        assert found.numbers[name] == pytest.approx(rho, abs=0.05)
        assert found.numbers[f"{name}_low"] < found.numbers[name] < found.numbers[f"{name}_high"]


def test_the_sep_share_matches_an_independent_computation(encoder):
    import torch

    claim = _claim("sep_attention")
    ctx = Context(encoder, None, None, {}, attention_sample=5)
    found = measures.sep_share(claim, ctx)
    shares = []
    with torch.inference_mode():
        for text in sample_texts(demo_corpus(), 5):
            ids = encoder.tokenizer(text, return_tensors="pt", truncation=True, max_length=128)
            att = encoder.eager_model(**ids, output_attentions=True).attentions  # blocks 1..6: [1, H, T, T]
            sep = int((ids["input_ids"][0] == encoder.tokenizer.sep_token_id).nonzero()[0, 0])
            shares.append([float(att[b - 1][0, :, :, sep].double().mean()) for b in (3, 4, 5)])
    assert found.numbers["sep_share"] == pytest.approx(float(np.mean(shares)), abs=1e-5)
    assert found.sample == "5 corpus sentences"


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_every_row_recomputes_on_tiny_models_of_each_family(kind, tiny_model_dirs):
    enc = load_encoder(str(tiny_model_dirs[kind]))
    pairs = demo_pairs().iloc[::5].reset_index(drop=True)
    t = check_claims(enc, pairs=pairs, sample_size=132, attention_sample=4, baseline_sample=12).set_index("key")
    assert set(t["verdict"]) <= set(VERDICTS)
    assert (t["reason"].str.len() > 10).all()
    for key in ("sts_cls_vs_mean", "sep_attention", "anisotropy", "massive_activations", "layer_hierarchy"):
        assert t.loc[key, "verdict"] in (REPRODUCES, DIFFERS), (key, t.loc[key, "reason"])
    # 2 blocks: the published layers 6–10 of 12 fall on block 1.
    assert "block 1 of this 2-block model" in t.loc["sep_attention", "reason"]
    assert t.loc["value_norm_specials", "verdict"] in (REPRODUCES, DIFFERS, NOT_MEASURABLE)


# --- session results and optional modules ---------------------------------------------------------


def _ctx(enc, **session):
    return Context(enc, None, None, session, sample_size=132, attention_sample=4)


@pytest.fixture(scope="module")
def finetuned_dirs(tiny_model_dirs, tmp_path_factory):
    """The tiny BERT with its top block rewritten ("top"), and an untouched copy ("same")."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    out = {}
    for name in ("top", "same"):
        model = AutoModel.from_pretrained(str(tiny_model_dirs["bert"]))
        if name == "top":
            torch.manual_seed(3)
            with torch.no_grad():
                for p in model.encoder.layer[-1].parameters():
                    p.add_(torch.randn_like(p) * 4 * p.std().clamp_min(0.1))
        folder = tmp_path_factory.mktemp("finetuned") / name
        model.save_pretrained(str(folder))
        AutoTokenizer.from_pretrained(str(tiny_model_dirs["bert"])).save_pretrained(str(folder))
        out[name] = folder
    return out


def test_a_fine_tuned_copy_in_the_session_is_compared_layer_by_layer(tiny_encoder, finetuned_dirs):
    claim = _claim("finetuning_top_layers")
    top = ext.finetune_change(claim, _ctx(tiny_encoder, finetuned=str(finetuned_dirs["top"])))
    assert top.status == MEASURED
    assert top.numbers["lower_cka"] == pytest.approx(1.0, abs=1e-6)  # block 1 was not touched
    assert top.numbers["upper_cka"] < 0.99
    assert judge(claim, top)[0] == REPRODUCES
    same = ext.finetune_change(claim, _ctx(tiny_encoder, finetuned=load_encoder(str(finetuned_dirs["same"]))))
    assert same.numbers["upper_cka"] == pytest.approx(1.0, abs=1e-6)
    assert judge(claim, same)[0] == DIFFERS


def _finetune_run(model_name: str, values) -> SimpleNamespace:
    rows = [dict(pooling="cls", step=step, epoch=0.0, layer=layer, metric="cka_to_start", value=v)
            for step, series in ((0, [1.0] * len(values)), (10, values)) for layer, v in enumerate(series)]  # fmt: skip
    return SimpleNamespace(model_name=model_name, layer_metrics=pd.DataFrame(rows), summary=lambda: "cls won.")


def test_a_fine_tuning_run_of_the_session_gives_the_layer_change(tiny_encoder):
    claim = _claim("finetuning_top_layers")
    run = _finetune_run(tiny_encoder.name, [1.0, 0.95, 0.6])  # layers 0, 1, 2: the top one moved
    found = ext.finetune_change(claim, _ctx(tiny_encoder, finetune=run))
    assert found.numbers == {"lower_cka": 0.95, "upper_cka": 0.6}
    assert "step 10" in found.sample
    assert judge(claim, found)[0] == REPRODUCES
    other = ext.finetune_change(claim, _ctx(tiny_encoder, finetune=_finetune_run("another model", [1, 0.9, 0.5])))
    assert other.status == NOT_YET  # a run on another model is not this model's number


def test_optional_modules_are_used_when_present_and_named_when_absent(tiny_encoder, monkeypatch):
    ablation, board = _claim("massive_ablation"), _claim("faithful_mixing")
    monkeypatch.setattr(ext, "optional", lambda name: None)
    for claim, fn, module in ((ablation, ext.massive_ablation, "clsviz.experiments.interventions.massive_sweep"),
                              (board, ext.mixing_faithfulness, "clsviz.faithfulness.rank_measures")):  # fmt: skip
        found = fn(claim, _ctx(tiny_encoder))
        assert found.status == NOT_HERE_YET
        assert module in found.notes[0]
    calls = {}

    def sweep(encoder, texts, layer, seed, cancel):
        calls["sweep"] = (encoder.name, len(texts), layer)
        table = pd.DataFrame({"mode": ["zero", "mean"], "cosine": [0.42, 0.995], "layer": [1, 1], "dims": ["7", "7"]})
        return SimpleNamespace(table=table, model_name=encoder.name)

    def rank(encoder, texts, measures, max_length, seed, cancel):
        calls["rank"] = tuple(measures)
        ranking = pd.DataFrame({"measure": ["value_zeroing", "alti", "attention", "random"], "aopc": [0.3, 0.2, 0.1, 0.0]})
        return SimpleNamespace(ranking=lambda: ranking, model_name=encoder.name, notes=())

    monkeypatch.setattr(ext, "optional", {"massive_sweep": sweep, "rank_measures": rank}.get)
    found = ext.massive_ablation(ablation, _ctx(tiny_encoder))
    assert calls["sweep"] == (tiny_encoder.name, 4, 1)
    assert found.numbers == {"zero_cosine": 0.42, "mean_cosine": 0.995}
    assert judge(ablation, found)[0] == REPRODUCES
    found = ext.mixing_faithfulness(board, _ctx(tiny_encoder))
    assert {"attention", "alti", "value_zeroing"} <= set(calls["rank"])
    assert judge(board, found)[0] == REPRODUCES


def test_session_results_of_this_model_are_used_and_others_are_named(tiny_encoder):
    table = pd.DataFrame({"mode": ["zero", "mean"], "cosine": [0.97, 0.999], "layer": [1, 1], "dims": ["3", "3"]})
    mine = SimpleNamespace(table=table, model_name=tiny_encoder.name, finding="Zeroing barely matters here.")
    found = ext.massive_ablation(_claim("massive_ablation"), _ctx(tiny_encoder, massive=mine))
    assert found.sample == "the last massive-dimension test of this session"
    assert judge(_claim("massive_ablation"), found)[0] == DIFFERS
    from clsviz.experiments.probe import ProbeResult

    probe = ProbeResult(table=pd.DataFrame({"layer": [0, 1, 0, 1], "pooling": ["cls", "cls", "mean", "mean"],
                                            "accuracy_mean": [0.5, 0.8, 0.6, 0.9], "accuracy_sd": 0.0, "n": 40,
                                            "folds": 5}),
                        label="topic", classes=("a", "b"), class_counts=(20, 20), chance=0.5, majority=0.5, n=40,
                        folds=5, model_name="someone else's model")  # fmt: skip
    said = describe_elsewhere({"probe": probe, "massive": mine}, tiny_encoder.name)
    assert said["layer_hierarchy"].startswith("The last probe on 'Could any token do?' (label 'topic'): best mean 90%")
    assert "computed on someone else's model, not on this model" in said["layer_hierarchy"]
    assert said["massive_ablation"] == "The last massive-dimension test: Zeroing barely matters here."


def test_the_verdicts_are_counted_and_the_session_sentences_refreshed(tiny_encoder):
    rows = [{c: "" for c in COLUMNS} | {"key": k, "verdict": v}
            for k, v in (("massive_ablation", DIFFERS), ("anisotropy", DIFFERS), ("inversion", NOT_MEASURABLE))]  # fmt: skip
    table = pd.DataFrame(rows)
    assert count_verdicts(table, "m") == "3 findings on m: 2 differs, 1 not measurable on this model."
    sweep = SimpleNamespace(table=None, model_name=tiny_encoder.name, finding="The sink moves.")
    fresh = with_elsewhere(table, {"massive": sweep}, tiny_encoder.name)
    assert list(fresh["elsewhere"]) == ["The last massive-dimension test: The sink moves.", "", ""]
    assert list(with_elsewhere(table, None, tiny_encoder.name)["elsewhere"]) == ["", "", ""]


def test_the_html_section_escapes_every_text():
    row = {c: "x" for c in COLUMNS} | {"reason": "<script>alert(1)</script>", "url": "https://e.org/?a=1&b='2'"}
    html = claims_html(pd.DataFrame([row]), "<b>model</b>")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;model&lt;/b&gt;" in html and "&amp;b=&#x27;2&#x27;" in html


def test_the_report_carries_the_findings_when_asked(tiny_encoder):
    from clsviz import trace
    from clsviz.report import build_report

    t = trace(tiny_encoder, "the cat chased a dog")
    row = {c: "x" for c in COLUMNS} | {"source": "Clark et al. 2019", "verdict": DIFFERS}
    sections = []  # the findings section does not depend on the figures
    with_claims = build_report(t, sections=sections, claims=pd.DataFrame([row]))
    assert "id='published-findings'" in with_claims and "Clark et al. 2019" in with_claims
    assert "published-findings" not in build_report(t, sections=sections)


def test_nan_never_reaches_a_reason(bundled_table):
    assert not bundled_table["reason"].str.contains(r"\bnan\b").any()
    assert not any(isinstance(v, float) and math.isnan(v) for v in bundled_table["this_model"])
