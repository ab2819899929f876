"""The sentences clsviz writes: read from every layer, naming where an effect holds, tested on
planted series whose right description is known (clsviz/narrative.py)."""

from __future__ import annotations

import numpy as np
import pytest

from clsviz import narrative as N


def test_layer_spans_read_like_a_person_writes_them():
    assert N.layer_span([0, 1, 2, 3, 5]) == "layers 0–3 and 5"
    assert N.layer_span([4], "block") == "block 4"
    assert N.layer_span([6, 1, 2, 4, 5]) == "layers 1–2 and 4–6"
    assert N.layer_span([1, 3, 5]) == "layers 1, 3 and 5"
    assert N.layer_span([]) == "no layer"


def test_a_monotone_series_is_described_from_end_to_end():
    text = N.describe_series([0.10, 0.20, 0.35, 0.50, 0.70, 0.90], range(6))
    assert text == "rises from 0.10 at layer 0 to 0.90 at layer 5"
    assert N.describe_series([5, 4, 3, 2], range(1, 5), ".0f", "block") == "falls from 5 at block 1 to 2 at block 4"


def test_a_series_that_narrows_in_the_middle_says_so():
    # The default sentence's entropy of what [CLS] reads: 0.80, 0.21, 0.14, 0.35, 0.37, 1.56.
    text = N.describe_series([0.80, 0.21, 0.14, 0.35, 0.37, 1.56], range(1, 7), word="block")
    assert text == "falls from 0.80 at block 1 to 0.14 at block 3, then rises to 1.56 at block 6"
    # Comparing only block 1 with block 6 ("reads more broadly as layers go up") would hide the dip.
    assert "block 3" in text


def test_small_wiggles_are_not_turns_but_a_plateau_is_named():
    text = N.describe_series([0.50, 0.90, 0.91, 0.90, 0.905, 0.90], range(6))
    assert text.startswith("rises from 0.50 at layer 0 to 0.91 at layer 2")
    assert "stays close to that up to layer 5" in text
    assert "falls" not in text
    assert N.describe_series([3, 3, 3], range(3)).startswith("stays near 3.00 at every layer")


def test_turning_points_of_a_zigzag():
    assert N.turning_points([0, 10, 2, 9, 1]) == [0, 1, 2, 3, 4]
    assert N.turning_points([0, 10, 9.5, 10.2, 0]) == [0, 3, 4]


def test_a_gap_large_in_the_middle_and_small_at_the_end():
    cls = np.array([0.90, 0.70, 0.72, 0.905, 0.91, 0.92])
    mean = np.array([0.90, 0.88, 0.85, 0.91, 0.915, 0.925])
    text = N.describe_gap(cls, mean, range(1, 7), "[CLS]", "the mean", word="block")
    assert "the mean is ahead of [CLS] by 13–18 points at blocks 2–3" in text
    assert "within 2 points at blocks 1 and 4–6" in text
    # The best block alone (a gap of under a point) would say the pooling costs nothing.
    assert "[CLS] is ahead" not in text


def test_numbers_the_same_as_for_unrelated_text_are_found():
    values = [0.9999, 0.9998, 0.9995, 0.62]
    reference = [0.9999, 0.9999, 0.9996, 0.30]
    assert N.same_as_baseline(values, reference, tolerance=0.001) == [0, 1, 2]


def test_no_winner_is_crowned_when_intervals_overlap():
    overlapping = N.verdict_from_intervals({"cls": (0.742, 0.66, 0.81), "mean": (0.730, 0.65, 0.80)}, ".3f")
    assert overlapping.startswith("The 95% intervals overlap") and "cls 0.742 (0.660–0.810)" in overlapping
    clear = N.verdict_from_intervals({"cls": (0.50, 0.45, 0.55), "mean": (0.80, 0.75, 0.85)}, ".2f")
    assert clear.startswith("mean is ahead and its 95% interval clears the others")


class _Baseline:
    """A planted baseline: [CLS] the same vector for every input at layers 0-5."""

    references = ("cls", "cls_mean_content", "cls_token")

    def reference(self, kind, view="raw"):
        values = {
            "cls": [1.0, 1.0, 0.9999, 0.9999, 0.9998, 0.9995, 0.62],
            "cls_mean_content": [0.0, 0.01, 0.02, 0.03, 0.05, 0.09, 0.02],
            "cls_token": [0.0] * 6 + [0.01],
        }[kind]
        return np.array(values), np.full(7, 0.02)


def test_findings_read_every_layer_and_say_when_cls_is_one_vector(encoder):
    from clsviz import trace

    t = trace(encoder, "The film was not bad at all.")
    plain = {f.key: f for f in N.findings(t)}
    with_baseline = {f.key: f for f in N.findings(t, _Baseline())}
    # Every block is read: the entropy sentence names the block where [CLS] reads most narrowly.
    ent = np.array([
        float(np.mean([-(p[p > 0] * np.log(p[p > 0])).sum() for p in t.attentions[b, :, 0, :].astype(np.float64)]))
        for b in range(t.num_layers)
    ])
    narrowest = int(np.argmin(ent)) + 1
    assert f"at block {narrowest}" in plain["learn"].answer and "then rises" in plain["learn"].answer
    assert plain["learn"].value == pytest.approx(ent[-1], abs=1e-4)
    # With the baseline, the page says the most important fact about this model.
    assert "At layers 0–5 this model's [CLS] is almost the same vector for every input" in with_baseline["aggregate"].answer
    assert "only at layer 6 (0.62)" in with_baseline["aggregate"].answer
    assert "Compare it with the unrelated-sentence baseline" in plain["aggregate"].answer
    assert "a token of an unrelated sentence scores 0.01" in with_baseline["recover"].answer


def test_a_literal_special_token_is_found_in_the_text(encoder):
    from clsviz import trace
    from clsviz.tracing import literal_specials

    t = trace(encoder, "Why is the [CLS] token always first?")
    assert literal_specials(t, encoder.tokenizer) == ["[CLS]"]
    assert "[CLS]" not in t.tokens[1:]  # split into pieces, never the special token
    assert literal_specials(trace(encoder, "No special text here."), encoder.tokenizer) == []


def _position_table(cos_by_variant: dict, received_by_variant: dict):
    import pandas as pd

    rows = []
    for variant, values in cos_by_variant.items():
        for layer, value in enumerate(values):
            rows.append({"variant": variant, "layer": layer, "cos_to_standard_cls": value,
                         "attention_received": np.nan if layer == 0 else received_by_variant[variant][layer - 1],
                         "cos_to_mean": 0.17 if variant == "standard" else 0.1})
    return pd.DataFrame(rows)


def test_the_position_summary_names_the_layer_from_which_each_variant_matches():
    table = _position_table(
        {
            "standard": [1.0] * 7,
            "mask": [0.80, 0.999, 1.0, 1.0, 1.0, 1.0, 0.998],
            "cls_end": [0.46, 0.52, 0.93, 0.999, 1.0, 1.0, 0.98],
        },
        {"standard": [0.28, 0.58, 0.68, 0.51, 0.66, 0.63], "mask": [0.31, 0.58, 0.68, 0.51, 0.66, 0.63],
         "cls_end": [0.15, 0.15, 0.29, 0.30, 0.38, 0.35]},
    )
    text = N.position_summary(table, _Baseline(), {"mask": "masked", "cls_end": "moved to the end"})
    assert "masked: from layer 1" in text and "moved to the end: from layer 3" in text
    # The last layer alone (0.98 vs 0.998) would hide that the moved [CLS] needs three blocks.
    assert "moved to the end 0.980" in text and "masked 0.998" in text
    assert "moved to the end receives 49%" in text  # about half the attention
    assert "Caution: at layers 0–5 this model's [CLS] is almost the same vector" in text


def test_the_probe_gap_summary_says_where_a_moved_cls_loses():
    import pandas as pd

    standard = [0.30, 0.90, 0.95, 0.96, 0.96, 0.97, 0.97]
    moved = [0.30, 0.75, 0.80, 0.95, 0.96, 0.97, 0.965]
    rows = [{"variant": v, "layer": i, "accuracy": a, "majority": 0.25}
            for v, acc in (("standard", standard), ("cls_end", moved)) for i, a in enumerate(acc)]
    text = N.probe_gap_summary(pd.DataFrame(rows), "standard", {"standard": "[CLS] first", "cls_end": "moved"})
    assert "[CLS] first is ahead of moved by 15 points at layers 1–2" in text
    assert "within 2 points at layers 0 and 3–6" in text
    assert "majority class gives 25%" in text
    # With the spread over folds the noise of each gap is known: a 15-point gap with fold SDs of
    # 20 points (1.96 * sqrt(2 * 0.04 / 5) = 25 points of noise) is about even.
    noisy = pd.DataFrame(rows).assign(accuracy_sd=0.2, folds=5)
    text = N.probe_gap_summary(noisy, "standard", {"standard": "[CLS] first", "cls_end": "moved"})
    assert "about even (the 95% interval of the gap includes 0) at layers 0–6" in text and "ahead" not in text
    assert N.fold_noise(0.2, 0.2, 5) == pytest.approx(1.96 * np.sqrt(0.08 / 5))
