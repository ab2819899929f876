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
    INCONCLUSIVE,
    MEASURED,
    MEASURES,
    NOT_MEASURABLE,
    NOT_YET,
    REPRODUCES,
    VERDICTS,
    ClaimsFileError,
    Context,
    Measurement,
    ablation_numbers,
    caveat,
    check_claims,
    claims_html,
    count_verdicts,
    describe_elsewhere,
    finetuning,
    judge,
    load_claims,
    matching_blocks,
    measures,
    mixing_numbers,
    parse_claims,
    peak_layer,
    probing,
    sample_texts,
    unmet,
    verdict,
    weighted_cka,
    with_elsewhere,
)
from clsviz.literature import external as ext
from clsviz.provenance import model_profile, objective_record
from clsviz.verdicts import Estimate
from tests.conftest import TINY_KINDS

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(sample_size=140, attention_sample=6, baseline_sample=24, scoreboard_sample=3)


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
    assert (sts["cls_average"], sts["mean_average"], sts["cls_stsb"], sts["mean_stsb"]) == (
        29.19,
        54.81,
        16.50,
        46.35,
    )
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
INSIDE = [
    {
        "kind": "inside",
        "number": "ratio",
        "threshold": 0.8,
        "upper": 1.2,
        "label": "the ratio",
        "format": ".2f",
    }
]
ABOVE = [{"kind": "above", "number": "gap", "threshold": 10.0, "label": "mean minus [CLS]", "format": ".1f"}]


def _e(value, low, high, n=40):
    return Estimate(value, low, high, n)


@pytest.mark.parametrize(
    "checks, numbers, expected",
    [
        (AT_LEAST, {"share": _e(0.55, 0.52, 0.58)}, REPRODUCES),
        (AT_LEAST, {"share": _e(0.45, 0.40, 0.49)}, DIFFERS),
        (AT_LEAST, {"share": _e(0.55, 0.45, 0.62)}, INCONCLUSIVE),  # right side, but the interval straddles
        (AT_LEAST, {"share": 0.55}, INCONCLUSIVE),  # a bare number has no interval: never decided
        (AT_LEAST, {"share": _e(float("nan"), 0, 1)}, NOT_MEASURABLE),
        (AT_LEAST, {}, NOT_MEASURABLE),
        (INSIDE, {"ratio": _e(1.0, 0.9, 1.1)}, REPRODUCES),
        (INSIDE, {"ratio": _e(1.4, 1.3, 1.5)}, DIFFERS),
        (INSIDE, {"ratio": _e(1.15, 1.1, 1.3)}, INCONCLUSIVE),
        # The published Sentence-BERT gap (25.6) with a tight interval; a small one; a straddling one.
        (ABOVE, {"gap": _e(25.6, 20.0, 31.0)}, REPRODUCES),
        (ABOVE, {"gap": _e(6.0, 3.0, 9.0)}, DIFFERS),
        (ABOVE, {"gap": _e(12.0, 4.0, 20.0)}, INCONCLUSIVE),
        ([], {"x": 1.0}, NOT_MEASURABLE),
    ],
)
def test_the_verdict_on_planted_values(checks, numbers, expected):
    result, reason = verdict(checks, numbers)
    assert result == expected
    assert reason and "nan" not in reason


def test_the_reason_says_the_numbers_and_names_what_failed_first():
    result, reason = verdict(AT_LEAST + INSIDE, {"share": _e(0.6, 0.55, 0.65), "ratio": _e(2.0, 1.8, 2.2)})
    assert result == DIFFERS
    assert reason.startswith(
        "the ratio is 2.00 (95% interval 1.80–2.20): the whole interval lies outside 0.80–1.20"
    )
    assert "the share is 60% (95% interval 55%–65%): the whole interval is at least 50%" in reason
    result, reason = verdict(
        AT_LEAST + ABOVE, {"share": _e(0.6, 0.55, 0.65), "gap": _e(12.0, 6.0, 18.0, n=40)}
    )
    assert result == INCONCLUSIVE
    assert "straddles 10.0" in reason
    # Half-width 6 on 40 pairs, 2 above the threshold: the half-width must shrink threefold, so
    # nine times the pairs - 320 more.
    assert reason.endswith("about 320 more sentences would, if the estimate held.")


@pytest.mark.parametrize("share, expected", [(_e(0.62, 0.55, 0.7), REPRODUCES), (_e(0.45, 0.40, 0.49), DIFFERS),
                                             (_e(0.52, 0.47, 0.58), INCONCLUSIVE)])  # fmt: skip
def test_the_shipped_rules_on_planted_values(share, expected):
    """Clark et al.: more than half the attention on [SEP] in the matching layers."""
    claim = _claim("sep_attention")
    result, reason = judge(claim, Measurement(MEASURED, "v", {"sep_share": share}))
    assert result == expected
    assert f"{share.value:.0%}" in reason and "more than half" in reason


def test_every_shipped_rule_can_fail():
    """Each check of every claim on both sides of its threshold and straddling it."""
    for claim in load_claims():
        for check in claim.checks:
            t = float(check["threshold"])
            top = float(check.get("upper", t))
            span = max(abs(t), abs(top), 1.0) * 0.1
            high, low = (
                _e(top + 2 * span, top + span, top + 3 * span),
                _e(t - 2 * span, t - 3 * span, t - span),
            )
            straddle = _e(t, t - span, t + span)
            outcomes = [verdict([check], {check["number"]: x})[0] for x in (high, low, straddle)]
            assert outcomes[2] == INCONCLUSIVE, (claim.key, check["number"])
            assert sorted(outcomes[:2]) == [DIFFERS, REPRODUCES], (claim.key, check["number"], outcomes)


def test_a_row_that_was_not_measured_keeps_its_status_and_reason():
    claim = _claim("finetuning_top_layers")
    assert judge(claim, Measurement(NOT_YET, notes=("fine-tune a copy first",))) == (
        NOT_YET,
        "fine-tune a copy first.",
    )
    assert judge(claim, Measurement(MEASURED, "v", {}))[0] == NOT_MEASURABLE


def test_the_massive_ratio_is_one_definition():
    from clsviz.experiments.sink_dimensions import MASSIVE_RATIO

    assert (
        _claim("massive_activations").checks[0]["threshold"]
        == MASSIVE_RATIO
        == _claim("massive_activations").values["massive_ratio"]
    )


# --- preconditions --------------------------------------------------------------------------------


def test_a_sentence_tuned_model_does_not_meet_the_sbert_claim(encoder):
    why = unmet(_claim("sts_cls_vs_mean"), model_profile(encoder))
    assert "it needs a pre-trained model, pre-trained with next-sentence prediction" in why
    assert "This model is a sentence-tuned model" in why and "sentence-transformers files" in why
    assert "Measurable on a BERT-family model that was only pre-trained, with next-sentence prediction" in why
    assert unmet(_claim("anisotropy"), model_profile(encoder)) == ""


def test_preconditions_are_read_from_the_models_files(tiny_model_dirs, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(tiny_model_dirs["roberta"], tmp_path / "lab")
    sbert = _claim("sts_cls_vs_mean")
    assert "pre-trained with no sentence objective" in unmet(sbert, model_profile(load_encoder(str(folder))))
    folder = shutil.copytree(tiny_model_dirs["bert"], tmp_path / "lab-bert")  # the lab writes BERT models
    config = json.loads((folder / "config.json").read_text())
    config["clsviz_pretraining"] = {"summary": "first", "sentence_objective": "nsp"}
    (folder / "config.json").write_text(json.dumps(config))
    assert unmet(sbert, model_profile(load_encoder(str(folder)))) == ""  # the lab model with NSP meets it
    config["clsviz_pretraining"]["summary"] = "last"
    (folder / "config.json").write_text(json.dumps(config))
    assert "its summary token last" in unmet(sbert, model_profile(load_encoder(str(folder))))


def _lab_folder(tiny_model_dirs, tmp_path, objective, rows):
    """A tiny BERT marked as a lab model with ``objective``, its metrics.csv holding ``rows``
    (step, value, low, high) of the held-out sentence-objective accuracy (None: no metrics.csv)."""
    import json
    import shutil

    folder = shutil.copytree(tiny_model_dirs["bert"], tmp_path / f"lab-{objective}-{len(rows or ())}")
    config = json.loads((folder / "config.json").read_text())
    config["clsviz_pretraining"] = {"summary": "first", "sentence_objective": objective}
    (folder / "config.json").write_text(json.dumps(config))
    if rows is not None:
        table = [{"step": 3, "metric": "mlm_loss", "value": 6.0, "layer": "", "low": "", "high": ""}]
        table += [{"step": s, "metric": f"heldout_{objective}_accuracy", "value": v, "layer": "", "low": lo, "high": hi}
                  for s, v, lo, hi in rows]  # fmt: skip
        pd.DataFrame(table).to_csv(folder / "metrics.csv", index=False)
    return folder


def test_a_lab_models_caveat_says_how_well_it_learnt_its_sentence_objective(tiny_model_dirs, tmp_path):
    measured = Measurement(MEASURED, "x", {"gap": 1.0})
    sbert, anisotropy = _claim("sts_cls_vs_mean"), _claim("anisotropy")
    # at chance at the last checkpoint (step 800), although above it at an earlier one
    folder = _lab_folder(tiny_model_dirs, tmp_path, "nsp", [(0, 0.49, 0.43, 0.55), (400, 0.62, 0.56, 0.68),
                                                           (800, 0.52, 0.46, 0.58)])  # fmt: skip
    profile = model_profile(load_encoder(str(folder)))
    said = caveat(sbert, profile, measured)
    assert "NSP head (next-sentence prediction) reached 52% (95% interval 46%–58%)" in said
    assert "at step 800, not clearly above chance (50%)" in said and "hardly learnt" in said
    assert profile.objective_note not in caveat(anisotropy, profile, measured)  # a claim that needs no objective
    assert "bert family, 2 layers, 32 dims, pre-trained with next-sentence prediction;" in said  # said once
    # above chance: the whole interval over 50%
    folder = _lab_folder(tiny_model_dirs, tmp_path, "sop", [(0, 0.5, 0.44, 0.56), (200, 0.71, 0.65, 0.77)])
    said = caveat(sbert, model_profile(load_encoder(str(folder))), measured)
    assert "SOP head (sentence-order prediction) reached 71% (95% interval 65%–77%) on held-out sentence pairs at step 200, above chance" in said
    # a run without checkpoints recorded none; a model without a sentence objective has nothing to say
    folder = _lab_folder(tiny_model_dirs, tmp_path, "nsp", [])
    assert "recorded no held-out accuracy of its NSP head" in caveat(sbert, model_profile(load_encoder(str(folder))), measured)
    assert objective_record(folder, "none") == "" and objective_record(None, "nsp").startswith("The lab run recorded no")
    assert model_profile(load_encoder(str(tiny_model_dirs["bert"]))).objective_note == ""  # not a lab model


def test_layers_map_by_relative_depth():
    assert matching_blocks(6, 10, 12, 12) == [6, 7, 8, 9, 10]
    assert matching_blocks(6, 10, 12, 6) == [3, 4, 5]
    assert matching_blocks(6, 10, 12, 24) == list(range(12, 21))
    assert matching_blocks(6, 10, 12, 2) == [1]
    assert matching_blocks(6, 10, 12, 1) == []


def test_the_peak_is_the_first_layer_near_the_best():
    assert peak_layer([0.3, 0.9, 0.91, 0.92], tolerance=0.02) == 1
    assert peak_layer([0.3, 0.5, 0.7, 0.92], tolerance=0.02) == 3
    with pytest.raises(ValueError, match="at least two layers"):
        peak_layer([0.5])


class _Board:
    """A planted scoreboard: AOPC per text of each measure."""

    def __init__(self, **per_text):
        self.values = {k: np.asarray(v, dtype=float) for k, v in per_text.items()}

    def per_text(self, name):
        return self.values[name]


def test_the_scoreboard_numbers_compare_like_with_like_and_take_the_weaker_measure():
    ones = np.ones(30)
    board = _Board(rollout=0.2 * ones, alti=0.5 * ones + np.linspace(-0.01, 0.01, 30), value_zeroing=0.3 * ones,
                   attention=0.4 * ones, alti_block=0.45 * ones, value_zeroing_block=0.35 * ones)  # fmt: skip
    numbers = mixing_numbers(board)
    assert numbers["rollout_gap"].value == pytest.approx(0.1)  # value zeroing, the weaker, minus rollout
    assert numbers["block_gap"].value == pytest.approx(
        -0.05
    )  # one block: value zeroing loses to raw attention
    assert verdict(_claim("faithful_mixing").checks, numbers)[0] == DIFFERS


# --- the whole table ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled_table(encoder):
    pairs = demo_pairs().iloc[::4].reset_index(drop=True)
    return check_claims(encoder, pairs=pairs, **SMALL)


def test_every_claim_is_checked_on_the_bundled_model(bundled_table):
    t = bundled_table
    assert list(t.columns) == list(COLUMNS)
    assert {"low", "high", "threshold", "caveat"} <= set(t.columns)
    assert list(t["key"]) == [c.key for c in load_claims()]
    assert set(t["verdict"]) <= set(VERDICTS)
    assert t["reason"].str.len().min() > 20
    row = t.set_index("key")
    # The bundled model is sentence-tuned: the claims about pre-trained BERT with NSP do not apply,
    # and the row says why and what would make it measurable, with its numbers for reference.
    for key in ("sts_cls_vs_mean", "sep_attention"):
        assert row.loc[key, "verdict"] == NOT_MEASURABLE
        assert "sentence-tuned" in row.loc[key, "reason"] and "Measurable on" in row.loc[key, "reason"]
        assert row.loc[key, "this_model"] and row.loc[key, "low"] != ""
    measured = t[t["verdict"].isin([REPRODUCES, DIFFERS, INCONCLUSIVE])]
    assert {
        "value_norm_specials",
        "anisotropy",
        "massive_activations",
        "layer_hierarchy",
        "faithful_mixing",
    } <= set(measured["key"])
    for r in measured.itertuples():
        assert r.this_model and r.sample
        assert r.low != "" and r.high != "" and float(r.low) <= float(r.high), r.key
        assert r.threshold != "", r.key
        assert "sentence-tuned (mean pooling)" in r.caveat and "data:" in r.caveat, r.key
    assert (
        "blocks 3–5" in row.loc["sep_attention", "reason"]
        or "blocks 3–5" in row.loc["sep_attention", "this_model"]
    )
    assert row.loc["finetuning_top_layers", "verdict"] == NOT_YET
    assert "How does [CLS] learn?" in row.loc["finetuning_top_layers", "reason"]
    assert (row.loc["finetuning_top_layers", "low"], row.loc["finetuning_top_layers", "high"]) == ("", "")
    # No dimension of MiniLM reaches 1,000 times the median: nothing massive to ablate.
    assert row.loc["massive_ablation", "verdict"] == NOT_MEASURABLE
    assert "no massive activations" in row.loc["massive_ablation", "reason"]
    assert "where the replaced values vary most between inputs" in row.loc["massive_ablation", "reason"]
    assert row.loc["massive_activations", "verdict"] == DIFFERS
    assert (
        "rolled out" in row.loc["faithful_mixing", "this_model"]
        and "one block" in row.loc["faithful_mixing", "this_model"]
    )
    assert row.loc["inversion", "verdict"] == NOT_MEASURABLE
    assert row.loc["inversion", "this_model"].startswith("lower bounds:")
    assert all(s.startswith(src) for s, src in zip(t["sentence"], t["source"]))


def test_the_findings_do_not_depend_on_what_the_session_ran_before(encoder, bundled_table):
    pairs = demo_pairs().iloc[::4].reset_index(drop=True)
    planted = SimpleNamespace(table=pd.DataFrame({"mode": ["zero", "mean"], "cosine": [0.1, 0.999]}),
                              model_name=encoder.name, finding="Zeroing breaks it.")  # fmt: skip
    again = check_claims(encoder, pairs=pairs, session_results={"massive": planted}, **SMALL)
    columns = ["verdict", "this_model", "low", "high", "reason"]
    pd.testing.assert_frame_equal(again[columns], bundled_table[columns])
    assert (
        again.set_index("key").loc["massive_ablation", "elsewhere"]
        == "The last massive-dimension test: Zeroing breaks it."
    )


def _by_hand_last_layer(encoder, texts):
    """[CLS] and mean (every token the mask covers, as sentence-transformers) of the last layer,
    straight from the model on one padded batch."""
    import torch

    with torch.inference_mode():
        ids = encoder.tokenizer(
            list(texts), return_tensors="pt", padding=True, truncation=True, max_length=128
        )
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
    rhos = {}
    for name, vecs in (("cls", cls), ("mean", mean)):
        a, b = vecs[:n], vecs[n:]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        rho = 100 * spearmanr(cos, pairs["score"]).statistic
        assert found.numbers[name].value == pytest.approx(rho, abs=0.05)
        assert found.numbers[name].low < found.numbers[name].value < found.numbers[name].high
        rhos[name] = rho
    # The deciding number: the gap, with its paired interval over the pairs.
    gap = found.numbers["gap"]
    assert gap.value == pytest.approx(rhos["mean"] - rhos["cls"], abs=0.05) and gap.low < gap.value < gap.high
    assert gap.n == n and gap.unit == "pairs"


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
    assert found.numbers["sep_share"].value == pytest.approx(float(np.mean(shares)), abs=1e-5)
    per_text = np.mean(shares, axis=1)
    draws = per_text[np.random.default_rng(0).integers(0, 5, size=(1000, 5))].mean(axis=1)
    assert (found.numbers["sep_share"].low, found.numbers["sep_share"].high) == pytest.approx(
        tuple(np.percentile(draws, [2.5, 97.5])), abs=1e-5
    )
    assert found.sample == "5 corpus sentences"


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_every_row_recomputes_on_tiny_models_of_each_family(kind, tiny_model_dirs):
    enc = load_encoder(str(tiny_model_dirs[kind]))
    pairs = demo_pairs().iloc[::5].reset_index(drop=True)
    t = check_claims(
        enc, pairs=pairs, sample_size=132, attention_sample=4, baseline_sample=12, scoreboard_sample=2
    ).set_index("key")
    assert set(t["verdict"]) <= set(VERDICTS)
    assert (t["reason"].str.len() > 10).all()
    judged = (REPRODUCES, DIFFERS, INCONCLUSIVE)
    for key in ("anisotropy", "massive_activations", "layer_hierarchy"):
        assert t.loc[key, "verdict"] in judged, (key, t.loc[key, "reason"])
    # A bare BERT is assumed pre-trained with its family's NSP: the SBERT and Clark claims apply.
    # The other families were pre-trained without next-sentence prediction: they do not.
    nsp = kind == "bert"
    for key in ("sts_cls_vs_mean", "sep_attention"):
        assert (t.loc[key, "verdict"] in judged) if nsp else (t.loc[key, "verdict"] == NOT_MEASURABLE), (
            key,
            kind,
        )
    # 2 blocks: the published layers 6–10 of 12 fall on block 1.
    assert "block 1 of this 2-block model" in t.loc["sep_attention", "reason"]
    assert t.loc["value_norm_specials", "verdict"] in (*judged, NOT_MEASURABLE)


# --- a fine-tuned copy, the causal tests, the scoreboard ----------------------------------------------


def _ctx(enc, **kwargs):
    return Context(enc, None, None, {}, sample_size=132, attention_sample=4, **kwargs)


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


def test_a_fine_tuned_copy_is_compared_layer_by_layer(tiny_encoder, finetuned_dirs):
    claim = _claim("finetuning_top_layers")
    top = finetuning.finetune_change(claim, _ctx(tiny_encoder, finetuned=str(finetuned_dirs["top"])))
    assert top.status == MEASURED
    gap = top.numbers["lower_minus_upper"]
    assert gap.low > 0 and gap.value > 0.01  # block 1 was not touched, block 2 was
    assert judge(claim, top)[0] == REPRODUCES
    same = finetuning.finetune_change(
        claim, _ctx(tiny_encoder, finetuned=load_encoder(str(finetuned_dirs["same"])))
    )
    assert same.numbers["lower_minus_upper"].value == pytest.approx(0.0, abs=1e-6)
    assert judge(claim, same)[0] == DIFFERS
    assert finetuning.finetune_change(claim, _ctx(tiny_encoder)).status == NOT_YET


def test_the_fine_tuned_copys_training_texts_are_left_out(encoder, finetuned_classifier_dir):
    from clsviz.provenance import text_digest, training_texts

    claim = _claim("finetuning_top_layers")
    ctx = Context(encoder, demo_corpus().subset(range(40)), None, finetuned=str(finetuned_classifier_dir))
    found = finetuning.finetune_change(claim, ctx)
    seen = training_texts(load_encoder(str(finetuned_classifier_dir)))
    assert found.sample.startswith("24 corpus sentences")  # 40 minus the 16 it was trained on
    assert any("16 of 40 texts were left out" in n for n in found.notes)
    kept = [t for t in demo_corpus().texts[:40] if text_digest(t) not in seen]
    assert len(kept) == 24


def test_the_weighted_cka_is_the_cka_of_the_resampled_rows():
    from clsviz.compare import cka

    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(6), [3, 2, 4, 1, 2, 3])
    X, Y = rng.normal(size=(len(owner), 5)), rng.normal(size=(len(owner), 4))
    Y[:, :2] += X[:, :2]
    assert weighted_cka(X, Y, owner, np.ones(6)) == pytest.approx(cka(X, Y), abs=1e-10)
    weights = np.array([2, 0, 1, 0, 3, 0])  # sentence 0 twice, sentence 4 three times, ...
    rows = np.concatenate([np.flatnonzero(owner == i) for i, w in enumerate(weights) for _ in range(w)])
    assert weighted_cka(X, Y, owner, weights) == pytest.approx(cka(X[rows], Y[rows]), abs=1e-10)


def test_the_massive_check_fails_when_the_dimensions_are_chosen_at_random(encoder):
    from clsviz.experiments.interventions import massive_sweep
    from clsviz.experiments.sink_dimensions import random_dimensions

    texts = sample_texts(demo_corpus(), 12)
    claim = _claim("massive_ablation")
    largest = massive_sweep(encoder, texts, layer=3)
    picked = [int(d) for d in largest.table.set_index("mode").loc["zero", "dims"].split(", ")]
    real = ablation_numbers(largest)
    assert (
        real["zero_cosine"].high < 0.9 and real["control_gap"].low > 0
    )  # MiniLM's largest dimension matters
    chosen = random_dimensions(encoder.info.hidden_size, picked, len(picked), seed=5)
    at_random = ablation_numbers(massive_sweep(encoder, texts, layer=3, dims=chosen))
    result, reason = verdict(claim.checks, at_random)
    assert result == DIFFERS and "final [CLS] with the dimensions zeroed" in reason


def test_the_layer_of_the_massive_test_is_where_the_replaced_values_vary(encoder):
    layer, spread, same, dims = ext.varying_layer(Context(encoder, None, None, attention_sample=8))
    assert 1 <= len(dims) <= 4
    assert 1 <= layer < encoder.info.num_layers
    assert same > 0.99  # MiniLM's [CLS] is nearly one vector for every input before the last layer
    assert spread > 0.01


def test_optional_modules_are_named_when_absent(tiny_encoder, monkeypatch):
    monkeypatch.setattr(ext, "optional", lambda name: None)
    for key, fn, module in (("massive_ablation", ext.massive_ablation, "clsviz.experiments.interventions.massive_sweep"),
                            ("faithful_mixing", ext.mixing_faithfulness, "clsviz.faithfulness.rank_measures")):  # fmt: skip
        found = fn(_claim(key), _ctx(tiny_encoder))
        assert found.status == NOT_YET and module in found.notes[0]


def test_the_probe_profile_reads_the_same_accuracies_as_run_probe(encoder):
    from clsviz.experiments.probe import check_labels, run_probe

    ctx = Context(encoder, None, None, sample_size=140)
    vectors = ctx.demo_vectors()
    result = run_probe(vectors, "sentiment", poolings=["cls"], n_jobs=1)
    y, _ = check_labels(list(vectors.labels["sentiment"]), 5, "sentiment")
    right = probing.out_of_fold_correct(vectors.vectors[:, :, vectors.poolings.index("cls")], y, seeds=(0,))
    np.testing.assert_allclose(
        right.mean(axis=1), result.table.sort_values("layer")["accuracy_mean"], atol=0.01
    )
    found = probing.probe_peaks(_claim("layer_hierarchy"), ctx)
    assert {"semantics_minus_surface", "syntax_minus_surface", "semantics_minus_syntax"} == set(found.numbers)
    assert all(e.low <= e.value <= e.high for e in found.numbers.values())


def test_the_anisotropy_numbers_are_the_baselines(encoder):
    from clsviz.baseline import baseline_texts, measure_baseline

    found = measures.anisotropy_profile(
        _claim("anisotropy"), Context(encoder, None, None, baseline_sample=24)
    )
    texts, _ = baseline_texts(24, 0)
    token = measure_baseline(encoder, texts, sample=24).wide("raw")["token"].to_numpy()[1:]
    assert found.numbers["lowest"].value == pytest.approx(token.min(), abs=1e-5)
    assert found.numbers["upper_minus_lower"].value == pytest.approx(
        token[-3:].mean() - token[:3].mean(), abs=1e-5
    )
    assert found.numbers["lowest"].low <= found.numbers["lowest"].value <= found.numbers["lowest"].high


def test_session_results_are_described_and_others_are_named(tiny_encoder):
    mine = SimpleNamespace(table=None, model_name=tiny_encoder.name, finding="Zeroing barely matters here.")
    from clsviz.experiments.probe import ProbeResult

    probe = ProbeResult(table=pd.DataFrame({"layer": [0, 1, 0, 1], "pooling": ["cls", "cls", "mean", "mean"],
                                            "accuracy_mean": [0.5, 0.8, 0.6, 0.9], "accuracy_sd": 0.0, "n": 40,
                                            "folds": 5}),
                        label="topic", classes=("a", "b"), class_counts=(20, 20), chance=0.5, majority=0.5, n=40,
                        folds=5, model_name="someone else's model")  # fmt: skip
    said = describe_elsewhere({"probe": probe, "massive": mine}, tiny_encoder.name)
    assert said["layer_hierarchy"].startswith(
        "The last probe on 'Could any token do?' (label 'topic'): best mean 90%"
    )
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
    row = {c: "x" for c in COLUMNS} | {
        "reason": "<script>alert(1)</script>",
        "url": "https://e.org/?a=1&b='2'",
    }
    html = claims_html(pd.DataFrame([row]), "<b>model</b>")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;model&lt;/b&gt;" in html and "&amp;b=&#x27;2&#x27;" in html
    measured = {c: "x" for c in COLUMNS} | {
        "low": 0.41,
        "high": 0.52,
        "threshold": 0.5,
        "caveat": "<i>on MiniLM</i>",
    }
    html = claims_html(pd.DataFrame([measured]))
    assert "95% interval of the deciding number 0.41–0.52; threshold 0.5" in html
    assert "Caveat: &lt;i&gt;on MiniLM&lt;/i&gt;" in html


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


def test_the_interval_in_the_table_is_the_one_that_decided():
    from clsviz.literature.table import _deciding

    claim = _claim("layer_hierarchy")
    numbers = {"semantics_minus_surface": _e(0.1, -0.2, 0.4), "syntax_minus_surface": _e(-0.5, -0.67, -0.33),
               "semantics_minus_syntax": _e(0.2, 0.1, 0.3)}  # fmt: skip
    found = Measurement(MEASURED, "v", numbers)
    assert judge(claim, found)[0] == DIFFERS
    assert _deciding(claim, found) == (-0.67, -0.33, 0.0)  # the check that differs, not the first
    numbers["syntax_minus_surface"] = _e(0.1, 0.0, 0.2)
    assert _deciding(claim, Measurement(MEASURED, "v", numbers)) == (-0.2, 0.4, 0.0)  # the straddling one
