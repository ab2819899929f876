"""The benchmark machinery (no timing here): figures and their spread, the growth exponent, the
other areas' results folded in, the README block written from results.json."""

from __future__ import annotations

import math

import pytest

from benchmarks import external, results, run, timing


def test_figure_is_median_with_min_and_max():
    fig = results.figure([3.0, 1.0, 2.0, 10.0], "s", "note")
    assert (fig["value"], fig["min"], fig["max"], fig["runs"]) == (2.5, 1.0, 10.0, 4)
    with pytest.raises(ValueError):
        results.figure([], "s")


@pytest.mark.parametrize("k", [1.0, 2.0, 0.5])
def test_growth_exponent_recovers_a_power_law(k):
    sizes = [32, 128, 512]
    assert timing.growth_exponent(sizes, [0.003 * s**k for s in sizes]) == pytest.approx(k)


def test_growth_exponent_needs_two_positive_points():
    assert timing.growth_exponent([32, 128], [0.1, 0.0]) is None
    assert timing.growth_exponent([32, 32], [0.1, 0.2]) is None


def test_percentile_interpolates_like_numpy():
    assert timing.percentile([1, 2, 3, 4, 5], 0.95) == pytest.approx(4.8)


def test_side_by_side_alternates_the_order():
    calls = []
    timing.side_by_side({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, runs=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]


def test_collector_grow_fits_the_medians():
    out = results.Collector()
    out.grow("trace", [32, 128, 512], [[s**2, s**2 * 1.1, s**2 * 0.9] for s in (32, 128, 512)])
    entry = out.growth["trace"]
    assert entry["unit"] == "tokens"
    assert entry["exponent"] == pytest.approx(2.0)
    assert entry["seconds"][2]["max"] == pytest.approx(512**2 * 1.1)


def test_fold_keeps_spreads_and_marks_single_values():
    raw = {
        "ratio": 2.0,
        "ratio_min": 1.5,
        "ratio_max": 2.5,
        "runs": 3,
        "flow": {"median_s": 0.2, "min_s": 0.1, "max_s": 0.4, "runs": 5},
        "alone": 7.0,
        "device": "cpu",
    }
    figures, context = external.fold("mixing", raw, {"ratio": ("<=", 3.0)})
    assert figures["mixing.ratio"]["min"] == 1.5 and figures["mixing.ratio"]["target"] == {
        "op": "<=",
        "value": 3.0,
    }
    assert "mixing.ratio_min" not in figures
    assert figures["mixing.flow"]["value"] == 0.2 and figures["mixing.flow"]["max"] == 0.4
    assert figures["mixing.alone"]["min"] is None
    assert context["device"] == "cpu"


def test_a_figure_a_module_could_not_measure_keeps_its_place_with_the_reason():
    raw = {"identical": None, "notes": {"identical": "the cluster could not be started: no ports"}, "other": 1.0}
    figures, _ = external.fold("corpora", raw, {"identical": (">=", 1)})
    assert figures["corpora.identical"]["value"] is None
    assert figures["corpora.identical"]["reason"] == "the cluster could not be started: no ports"
    assert figures["corpora.other"]["value"] == 1.0


def test_an_absent_area_is_recorded_not_dropped():
    raw, record = external._measure_module("no_such_area_here", timing.Settings(quick=True))
    assert raw is None and record["status"] == "absent"


def test_chosen_groups_accepts_keys_and_refuses_unknown_ones():
    assert run.chosen_groups("trace_overhead_ratio,umap") == ["trace", "umap"]
    assert run.chosen_groups("dynamics") == ["evidence"]
    with pytest.raises(SystemExit):
        run.chosen_groups("nonsense")


def _payload():
    return {
        "date": "2026-12-01 15:00 UTC",
        "machine": {"cpu_model": "Test CPU", "cpu_count": 2, "torch": "2.x", "torch_threads": 2, "gpu": None},
        "runs_per_figure": 3,
        "load_average": [1.0, 2.5],
        "figures": {
            "trace_overhead_ratio": results.figure([1.2, 1.3, 1.9], "x"),
            "slider_rerun_128_tokens_ms": results.figure([80, 90, 100], "ms"),
            "gpu_matmul_gflops": results.missing("no CUDA device", "GFLOP/s"),
        },
        "growth": {
            "trace": {
                "unit": "tokens",
                "sizes": [32, 128],
                "exponent": 1.5,
                "seconds": [results.figure([0.01, 0.02, 0.03]), results.figure([0.1, 0.2, 0.3])],
            }
        },
    }


def test_readme_block_matches_the_results(tmp_path, monkeypatch):
    monkeypatch.setitem(results.LIMITS, "slider_rerun_128_tokens_ms", "the figures are rebuilt on every move")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{results.README_START}\nold\n{results.README_END}\nafter\n")
    assert results.update_readme(readme, _payload())
    text = readme.read_text()
    assert "old" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    assert "| `trace_overhead_ratio` | 1.30 x | 1.20–1.90 (3 runs) | <= 1.5 | yes |" in text
    assert "| `slider_rerun_128_tokens_ms` | 90.0 ms | 80.0–100 (3 runs) | <= 50 | **no** |" in text
    assert "- `slider_rerun_128_tokens_ms`: the figures are rebuilt on every move" in text
    assert "`gpu_matmul_gflops`: no CUDA device" in text
    assert "Load average (1 min) before/after: 1.0/2.5" in text and "no GPU" in text
    payload = _payload()
    payload["groups"] = {"trace": {"load_average": [3.0, 7.5]}, "page": {"load_average": [2.0, 4.0]}}
    assert "at the start/end of the measurement groups: 2.0–7.5." in results.machine_line(payload)
    assert (
        "| trace | tokens | 32: 0.02 (0.01–0.03); 128: 0.2 (0.1–0.3) | 1.50 | 1.66 | between linear and quadratic |"
        in text
    )


@pytest.mark.parametrize(
    ("k", "words"),
    [
        (None, "—"),
        (0.3, "below linear: fixed costs weigh more than size"),
        (1.0, "about linear"),
        (2.0, "about quadratic"),
        (3.1, "steeper than quadratic"),
    ],
)
def test_growth_reading(k, words):
    assert results.growth_reading(k) == words


def test_readme_without_markers_is_left_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    assert not results.update_readme(readme, _payload())
    assert readme.read_text() == "no markers\n"


def test_target_met():
    assert results.target_met(1.0, ">=", 1.0) is True
    assert results.target_met(0.99, ">=", 1.0) is False
    assert results.target_met(None, "<=", 1.0) is None
    assert not math.isnan(results.figure([1.0])["value"])


def test_only_can_name_parts_of_a_group():
    assert run.chosen_groups("growth.trace,value_zeroing") == ["growth"]
    assert run.chosen_parts("growth.trace,value_zeroing,mixing") == {"trace", "value_zeroing", "mixing"}
    assert run.chosen_parts("trace,probe") == frozenset()  # group names win over growth operations
    assert run.chosen_parts("growth,value_zeroing,mixing") == {"mixing"}
    settings = timing.Settings(parts=frozenset({"value_zeroing", "mixing"}))
    assert settings.wants("value_zeroing", results.GROWTH) and not settings.wants("trace", results.GROWTH)
    assert settings.wants("mixing", external.MODULES) and not settings.wants("corpora", external.MODULES)
    assert timing.Settings().wants("corpora", external.MODULES)


def test_a_group_saves_each_part_as_it_goes(tmp_path, monkeypatch):
    import json

    (tmp_path / "results.json").write_text(
        json.dumps({"growth": {"umap": {"unit": "points", "sizes": [1], "seconds": [], "exponent": 2.0}}})
    )
    seen = {}

    def fake_growth(settings, out):
        assert settings.wants("trace", results.GROWTH) and not settings.wants("umap", results.GROWTH)
        out.grow("trace", [32, 128], [[1.0, 1.1, 0.9], [4.0, 4.4, 3.6]])
        out.checkpoint()
        seen.update(json.loads((tmp_path / "results.json").read_text())["growth"])
        raise RuntimeError("stopped on purpose")

    monkeypatch.setattr(run, "_groups", lambda: {"growth": fake_growth})
    assert run.main(["--only", "growth.trace,growth.extract", "--out", str(tmp_path)]) == 0
    assert seen["trace"]["exponent"] == pytest.approx(1.0)
    assert "stopped before" in seen["extract"]["reason"]
    final = json.loads((tmp_path / "results.json").read_text())
    assert final["growth"]["umap"]["exponent"] == 2.0  # not named: the earlier entry is kept
    assert final["growth"]["trace"]["exponent"] == pytest.approx(1.0)
    assert "stopped on purpose" in final["growth"]["extract"]["reason"]
    assert "probe" not in final["growth"]


def test_value_zeroing_is_extrapolated_from_its_steepest_part():
    from benchmarks.growth import predict_512

    out = results.Collector()
    out.grow("value_zeroing", [32, 128, 256], [[0.5] * 3, [8.0] * 3, [64.0] * 3], "note")
    entry = out.growth["value_zeroing"]
    predict_512(entry)
    assert entry["predicted_512_s"] == pytest.approx(512.0)  # k = 3 between 128 and 256
    assert "k = 3.00" in entry["note"] and "about 9 min" in entry["note"]
    predict_512(entry)  # a second call rewrites the sentence, never stacks it
    assert entry["note"].count("Not run at 512") == 1


def test_figures_without_a_unit_take_it_from_the_catalogue_or_their_key():
    assert results.unit_of("evidence_alti_ratio", {"unit": ""}) == "x"
    assert results.unit_of("interventions.knockout_sweep_demo_s", {"unit": ""}) == "s"
    assert results.unit_of("mixing.alti_512_peak_extra_mb", {}) == "MB"
    assert results.unit_of("dynamics.watched_finetune_minutes", {}) == "min"
    assert results.unit_of("corpora.extract_1k_texts_per_s", {}) == "/s"
    assert results.unit_of("mixing.integrated_gradients_64_steps_32_relative_gap", {}) == ""
    assert results.unit_of("page_512_tokens_s", {"unit": "ms"}) == "ms"  # its own unit first
    row = results._row(
        "interventions.head_ablation_200_s", {"value": 25.7, "min": None, "max": None, "unit": ""}
    )
    assert row.startswith("| `interventions.head_ablation_200_s` | 25.7 s |")


def test_a_remeasured_area_replaces_all_its_old_figures(tmp_path, monkeypatch):
    import json

    old = {"value": 1.0, "min": None, "max": None, "runs": None, "unit": ""}
    (tmp_path / "results.json").write_text(
        json.dumps({"figures": {"mixing.renamed_since": old, "corpora.untouched": old}})
    )

    def fake_evidence(settings, out):
        out.figures["mixing.alti_32_ratio"] = results.figure([0.9, 1.0, 1.1], "x")
        out.context["external"] = {"mixing": {"status": "measured"}}

    monkeypatch.setattr(run, "_groups", lambda: {"evidence": fake_evidence})
    assert run.main(["--only", "mixing", "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "results.json").read_text())["figures"]
    assert "mixing.renamed_since" not in figures and figures["mixing.alti_32_ratio"]["value"] == 1.0
    assert "corpora.untouched" in figures


def test_inversion_benchmark_records_the_median_ladder_with_its_spread(monkeypatch):
    """benchmarks/inversion.py: the ladder's minutes over three runs as median, min and max with
    the 5-minute target, folded like the other areas' modules (the ladder itself is replaced by
    fixed times here; make bench runs the real one)."""
    import benchmarks.inversion as inversion
    import clsviz.analyses

    times = iter([4.0, 2.0, 3.0])
    monkeypatch.setattr(inversion, "_ladder_once", lambda encoder, texts, layers: (
        next(times), {"settings": {"layers": layers}, "best_bleu": 50.0, "best_at": "mean layer 0"}))
    monkeypatch.setattr(clsviz.analyses, "get", lambda name: (lambda *args, **kwargs: None))
    out = inversion.measure(runs=3)
    assert (out["inverter_train_demo_minutes"], out["inverter_train_demo_minutes_min"],
            out["inverter_train_demo_minutes_max"], out["runs"]) == (3.0, 2.0, 4.0, 3)
    assert out["settings"] == {"layers": "all"} and out["targets"]["inverter_train_demo_minutes"]["met"]
    figures, context = external.fold("inversion", out, inversion.TARGETS)
    fig = figures["inversion.inverter_train_demo_minutes"]
    assert (fig["value"], fig["min"], fig["max"]) == (3.0, 2.0, 4.0)
    assert fig["target"] == {"op": "<=", "value": 5.0}
    assert results.unit_of("inversion.inverter_train_demo_minutes", {}) == "min"
    assert run.chosen_groups("inversion") == ["evidence"]
