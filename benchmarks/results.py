"""What `make bench` records: the catalogue of figures (group, unit, target), the collector the
measurements write into, and the writers of results.json and results.md.

A figure in results.json::

    {"value": median, "min": ..., "max": ..., "runs": n, "unit": "s", "note": "...",
     "group": "trace", "target": {"op": "<=", "value": 1.5}, "met": true}

A figure that could not be measured keeps its place with ``"value": null`` and a ``"reason"``.
A growth entry (how cost grows with size) holds one figure per size and the fitted exponent k of
time ~ size^k.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.timing import growth_exponent

__all__ = [
    "FIGURES",
    "GROWTH",
    "Collector",
    "figure",
    "machine",
    "markdown",
    "missing",
    "readme_section",
    "target_met",
    "update_readme",
    "write",
]


@dataclass(frozen=True)
class Spec:
    """One catalogued figure: the measurement group that makes it, its unit, its target."""

    group: str
    unit: str
    op: str | None = None
    target: float | None = None


def _specs(group: str, unit: str, *keys: str, op: str | None = None, target: float | None = None) -> dict[str, Spec]:
    return {key: Spec(group, unit, op, target) for key in keys}


FIGURES: dict[str, Spec] = {
    **_specs("model_load", "s", "model_load_bundled_s", "model_load_bert_base_s"),
    **_specs("trace", "x", "trace_overhead_ratio", op="<=", target=1.5),
    **_specs("trace", "x", "trace_overhead_value_norm_ratio", op="<=", target=2.0),
    **_specs("page", "ms", "slider_rerun_128_tokens_ms", op="<=", target=50),
    **_specs("page", "ms", "slider_rerun_512_tokens_ms", op="<=", target=250),
    **_specs("page", "s", "page_512_tokens_s", op="<=", target=0.5),
    **_specs("page", "bytes", "payload_512_tokens_bytes", op="<=", target=5_000_000),
    **_specs("throughput", "x", "corpus_throughput_ratio_demo_batch32", "corpus_throughput_ratio_demo_batch64",
             "corpus_throughput_ratio_long_batch32", "corpus_throughput_ratio_long_batch64", op=">=", target=1.0),
    **_specs("throughput", "texts/s", "extract_demo_texts_per_s", "sentence_transformers_demo_texts_per_s",
             "extract_long_texts_per_s", "sentence_transformers_long_texts_per_s"),
    **_specs("throughput", "fraction", "matmul_peak_fraction_demo", op=">=", target=0.5),
    **_specs("throughput", "fraction", "matmul_peak_fraction_long", op=">=", target=0.6),
    **_specs("throughput", "GFLOP/s", "matmul_gflops"),
    **_specs("breakdown", "x", "extract_vs_forward_demo_ratio", "sentence_transformers_vs_forward_demo_ratio",
             "extract_vs_forward_long_ratio", "sentence_transformers_vs_forward_long_ratio"),
    **_specs("gpu", "texts/s", "gpu_extract_demo_texts_per_s", "gpu_extract_long_texts_per_s"),
    **_specs("gpu", "fraction", "gpu_matmul_peak_fraction_demo", "gpu_matmul_peak_fraction_long"),
    **_specs("gpu", "GFLOP/s", "gpu_matmul_gflops"),
    **_specs("probe", "s", "probe_demo_all_layers_s", op="<=", target=10),
    **_specs("probe", "s", "probe_fits_demo_s", op="<=", target=10),
    **_specs("probe", "fits", "probe_capped_fits"),
    **_specs("umap", "s", "umap_warm_up_s", "umap_warm_up_cached_s", "umap_10k_warm_s", "umap_10k_cold_s",
             "umap_10k_cold_cached_s", "pca_2k_s"),
    **_specs("umap", "s", "umap_2k_warm_s", op="<=", target=10),
    **_specs("browser", "s", "browser_enter_to_plot_s", op="<=", target=1.5),
    **_specs("browser", "s", "browser_8_sessions_p50_s", "browser_8_sessions_p95_s"),
    **_specs("browser", "x", "browser_8_sessions_p50_ratio", op="<=", target=4.5),
    **_specs("browser", "s", "browser_512_tokens_s", op="<=", target=3.0),
    **_specs("cold_start", "s", "cold_start_first_plot_s", op="<=", target=8.0),
    **_specs("cold_start", "s", "cold_start_page_done_s", "cold_start_opened_later_s",
             "cold_start_opened_later_no_preload_s"),
    **_specs("first_visit", "s", "embeddings_first_visit_s", op="<=", target=10.0),
    **_specs("upload", "s", "corpus_upload_5000_first_projection_s", op="<=", target=15.0),
    **_specs("upload", "s", "corpus_upload_5000_s", op="<=", target=30.0),
    **_specs("upload", "GB", "corpus_upload_5000_server_rss_gb"),
    **_specs("app_memory", "GB", "peak_rss_512_bert_base_gb", op="<=", target=1.5),
    **_specs("load", "s", "new_sentence_idle_p95_s", "new_sentence_under_load_p95_s"),
    **_specs("load", "x", "responsiveness_under_load_ratio", op="<=", target=3.0),
    **_specs("visitors", "x", "visitors_50_interactive_p95_ratio", op="<=", target=3.0),
    **_specs("visitors", "s", "visitors_50_interactive_p95_s", "visitors_idle_interactive_p95_s",
             "visitors_50_heavy_p95_s"),
    **_specs("visitors", "GB", "visitors_50_peak_rss_gb", op="<=", target=6.0),
    **_specs("visitors", "visitors", "visitors_50_lost", op="<=", target=0),
    **_specs("visitors", "jobs", "visitors_50_max_jobs_ahead"),
    **_specs("visitors", "min", "visitors_50_minutes"),
    **_specs("visitors", "s", "visitors_idle_server_cpu_per_interaction_s"),
    **_specs("visitors", "fraction", "visitors_50_cpu_busy_share"),
    **_specs("visitors", "cores", "visitors_50_server_cpu_share"),
    **_specs("finetune", "min", "finetune_demo_minutes"),
    **_specs("finetune", "min", "demo_classifier_minutes", op="<=", target=2.0),
    **_specs("job_wait", "s", "job_first_result_s", op="<=", target=5.0),
    **_specs("finetune_page", "min", "finetune_page_defaults_minutes", op="<=", target=5.0),
    **_specs("evidence", "x", "evidence_knockout_sweep_ratio", "evidence_head_ablation_ratio",
             "evidence_integrated_gradients_ratio"),
    **_specs("evidence", "x", "evidence_value_zeroing_ratio", op="<=", target=8.0),
    **_specs("evidence", "x", "evidence_alti_ratio", op="<=", target=2.0),
    **_specs("evidence", "x", "evidence_gradient_flow_ratio", op="<=", target=3.0),
}
"""Every figure `make bench` writes, in the order of the results table."""

GROWTH: dict[str, tuple[str, str]] = {
    "trace": ("growth", "tokens"),
    "attention_page": ("growth", "tokens"),
    "extract": ("growth", "texts"),
    "umap": ("growth", "points"),
    "probe": ("growth", "texts"),
    "value_zeroing": ("growth", "tokens"),
}
"""Operations whose cost is measured at three sizes: op -> (group, what the size counts)."""


def figure(values, unit: str = "", note: str = "") -> dict:
    """The median of ``values`` with their min, max and count (values: one per run)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("a figure needs at least one run")
    return {"value": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values),
            "unit": unit, "note": note}


def missing(reason: str, unit: str = "") -> dict:
    """A figure that was not measured, with the reason."""
    return {"value": None, "min": None, "max": None, "runs": 0, "unit": unit, "reason": reason}


def target_met(value, op: str | None, target: float | None) -> bool | None:
    """Whether ``value`` meets ``op target`` (None without a target or a value)."""
    if value is None or op is None or target is None:
        return None
    return bool(value <= target) if op == "<=" else bool(value >= target)


class Collector:
    """Where the measurements write their figures, growth curves and context."""

    def __init__(self, on_checkpoint=None) -> None:
        self.figures: dict[str, dict] = {}
        self.growth: dict[str, dict] = {}
        self.context: dict[str, object] = {}
        self.on_checkpoint = on_checkpoint

    def checkpoint(self) -> None:
        """Save what is measured so far (a long group calls this after each of its parts, so a
        run stopped midway keeps them)."""
        if self.on_checkpoint is not None:
            self.on_checkpoint()

    def add(self, key: str, values, note: str = "", unit: str | None = None) -> dict:
        """Record ``values`` (one per run) under ``key`` (its unit from :data:`FIGURES`)."""
        spec = FIGURES.get(key)
        self.figures[key] = figure(values, unit if unit is not None else (spec.unit if spec else ""), note)
        return self.figures[key]

    def missing(self, key: str, reason: str) -> None:
        spec = FIGURES.get(key)
        self.figures[key] = missing(reason, spec.unit if spec else "")

    def grow(self, op: str, sizes: list[int], runs: list[list[float]], note: str = "") -> None:
        """Seconds of ``op`` at each size (one list of run times per size) and the fitted exponent."""
        points = [figure(r, "s") for r in runs]
        medians = [p["value"] for p in points]
        unit = GROWTH.get(op, ("growth", "size"))[1]
        self.growth[op] = {"unit": unit, "sizes": list(sizes), "seconds": points,
                           "exponent": growth_exponent(sizes, medians), "note": note}

    def growth_missing(self, op: str, reason: str) -> None:
        self.growth[op] = self.growth_entry_missing(op, reason)

    @staticmethod
    def growth_entry_missing(op: str, reason: str) -> dict:
        unit = GROWTH.get(op, ("growth", "size"))[1]
        return {"unit": unit, "sizes": [], "seconds": [], "exponent": None, "reason": reason}


def machine() -> dict:
    """Where the figures were measured: CPU, cores, torch and its threads, GPU."""
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def _finish(figures: dict) -> dict:
    """Figures in catalogue order (others after), each with its group, target and whether it is met."""
    ordered = {k: figures[k] for k in FIGURES if k in figures}
    ordered.update({k: v for k, v in figures.items() if k not in ordered})
    for key, fig in ordered.items():
        spec = FIGURES.get(key)
        if spec is not None:
            fig["group"] = spec.group
            fig["target"] = {"op": spec.op, "value": spec.target} if spec.op else None
        elif "target" not in fig:
            fig["target"] = None
        tgt = fig.get("target") or {}
        fig["met"] = target_met(fig.get("value"), tgt.get("op"), tgt.get("value"))
    return ordered


def write(payload: dict, folder: Path) -> tuple[Path, Path]:
    """Write ``payload`` (date, machine, figures, growth, ...) as results.json and results.md in
    ``folder``; targets are evaluated here. Returns the two paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    payload["figures"] = _finish(dict(payload.get("figures", {})))
    payload.setdefault("growth", {})
    json_path, md_path = folder / "results.json", folder / "results.md"
    json_path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n", encoding="utf-8")
    md_path.write_text(markdown(payload), encoding="utf-8")
    return json_path, md_path


def _jsonable(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except ImportError:
        pass
    return str(value)


def _number(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in ("bytes", "fits") or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _target_number(value) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


UNIT_SUFFIXES = (("_ratio_cpu", "x"), ("_ratio", "x"), ("_minutes", "min"), ("_per_s", "/s"), ("_mb", "MB"),
                 ("_gb", "GB"), ("_ms", "ms"), ("_s", "s"))
"""Key endings -> unit, for figures that came without one (other areas' modules name their units
in their keys: ``knockout_sweep_demo_s``, ``alti_512_peak_extra_mb``)."""


def unit_of(key: str, fig: dict) -> str:
    """The figure's unit: its own, the catalogue's, or the one its key's ending names."""
    if fig.get("unit"):
        return fig["unit"]
    if key in FIGURES:
        return FIGURES[key].unit
    return next((unit for suffix, unit in UNIT_SUFFIXES if key.endswith(suffix)), "")


def _row(key: str, fig: dict) -> str:
    unit = unit_of(key, fig)
    tgt = fig.get("target") or {}
    if fig.get("value") is None:
        value, spread, met = "—", "", "not measured"
    else:
        value = f"{_number(fig['value'], unit)} {unit}".strip()
        if fig.get("min") is None or fig.get("max") is None:
            spread = "one value (no spread)"
        else:
            runs = f" ({fig['runs']} runs)" if fig.get("runs") else ""
            spread = f"{_number(fig['min'], unit)}–{_number(fig['max'], unit)}{runs}"
        met = {True: "yes", False: "**no**", None: ""}[fig.get("met")]
    target = f"{tgt['op']} {_target_number(tgt['value'])}" if tgt.get("op") else ""
    return f"| `{key}` | {value} | {spread} | {target} | {met} |"


def machine_line(payload: dict) -> str:
    """'Measured <date> on <CPU>, <n> cores, torch <v> (<t> threads), <GPU or no GPU>.'"""
    mach = payload.get("machine", {})
    quick = " Quick mode (tiny sizes): not for comparison." if payload.get("quick") else ""
    load = payload.get("load_average")
    load_text = f" Load average (1 min) before/after: {load[0]:.1f}/{load[1]:.1f}." if load else ""
    seen = [v for g in payload.get("groups", {}).values() for v in (g.get("load_average") or [])]
    if seen:  # every group records its own (runs with --only fill in parts of one results file)
        load_text = f" Load average (1 min) at the start/end of the measurement groups: {min(seen):.1f}–{max(seen):.1f}."
    return (
        f"Measured {payload.get('date', '?')} on {mach.get('cpu_model', '?')}, {mach.get('cpu_count', '?')} cores, "
        f"torch {mach.get('torch', '?')} ({mach.get('torch_threads', '?')} threads), "
        f"{'GPU ' + mach['gpu'] if mach.get('gpu') else 'no GPU'}.{load_text}{quick}"
    )


def figures_table(payload: dict) -> list[str]:
    lines = ["| figure | value | spread (min–max) | target | met |", "|---|---|---|---|---|"]
    return lines + [_row(k, f) for k, f in payload.get("figures", {}).items()]


def growth_tables(payload: dict) -> list[str]:
    lines: list[str] = []
    for op, entry in payload.get("growth", {}).items():
        k = entry.get("exponent")
        lines += ["", f"**{op}** — time ∝ {entry.get('unit', 'size')}^k, "
                      + (f"k = {k:.2f}" if k is not None else f"not measured: {entry.get('reason', '')}"), ""]
        if entry.get("sizes"):
            lines += [f"| {entry['unit']} | seconds (median) | min–max | runs |", "|---|---|---|---|"]
            for size, point in zip(entry["sizes"], entry["seconds"]):
                lines.append(f"| {size:,} | {_number(point['value'])} | {_number(point['min'])}–{_number(point['max'])} "
                             f"| {point['runs']} |")
        if entry.get("note"):
            lines.append(f"\n{entry['note']}")
    return lines


def markdown(payload: dict) -> str:
    """results.md: the figures table, notes and reasons, growth tables, date and machine."""
    figures = payload.get("figures", {})
    lines = [f"# Benchmarks ({payload.get('date', '?')})", "", machine_line(payload), "", *figures_table(payload), ""]
    for key, fig in figures.items():
        text = fig.get("reason") if fig.get("value") is None else fig.get("note")
        if text:
            lines.append(f"- `{key}`: {'not measured: ' if fig.get('value') is None else ''}{text}")
    if payload.get("growth"):
        lines += ["", "## How cost grows", *growth_tables(payload)]
    for name, info in payload.get("external", {}).items():
        if info.get("status") != "measured":
            lines.append(f"- benchmarks/{name}.py: {info.get('reason', info.get('status'))}")
    return "\n".join(lines) + "\n"


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


README_START = "<!-- bench:start (written by benchmarks/run.py from benchmarks/results.json) -->"
README_END = "<!-- bench:end -->"

LIMITS: dict[str, str] = {
    "visitors_50_interactive_p95_ratio": (
        "fifty sessions' page runs share one Python process (its GIL) and two cores: each typed sentence is a new "
        "eager forward pass plus the page's figures rebuilt and re-sent, the job visitors open 'What flows into "
        "[CLS]?', whose measures and attributions are computed as the page opens (visitors_50_heavy_p95_s), and the "
        "job worker (at nice 10) computes value zeroing, the scoreboard and the uploads' embeddings. py-spy on the "
        "server found a fifth of its CPU in Streamlit's gc.collect(2) after every script and fragment run, holding "
        "the GIL for every session; it is off now (runner.postScriptGC = false), which took one interaction from "
        "0.41 to 0.06 CPU-seconds of the server (visitors_idle_server_cpu_per_interaction_s), the crowd's p95 from "
        "19.8 s to 0.44 s and the lone visitor's from 0.48 s to 0.083 s, so the ratio from 41x to about 5x. What is "
        "left (py-spy): the integrated-gradients attributions 'What flows into [CLS]?' computes in the server as it "
        "opens (the largest share of the server's model work, with torch's threads competing with the traces), the "
        "fifty traces, and the arrival burst (fifty visitors open the app and type within 30 s). Not tried: a lane "
        "in the job queue for the computations a page waits for, so those attributions could run in the "
        "lower-priority worker without waiting behind a scoreboard."),
    "trace_overhead_ratio": (
        "trace() adds tokenization with offsets, stacking every attention map and hidden state and copying them to "
        "float32 numpy, and summarize() (rollout, entropies, breakdowns); at ~30 tokens the bare pass takes a few "
        "milliseconds, so these fixed costs and the machine's load (its spread) decide the ratio."),
    "slider_rerun_128_tokens_ms": (
        "a move reruns the whole page script. py-spy over 60 moves showed where it went: building the figures "
        "(plotly's update_layout machinery, not the data: 14 ms for the token map, 21 ms for a head's bars), "
        "encoding every table behind a chart as CSV (a quarter of the rerun) and building the tables column by "
        "column. Now each figure is one go.Figure construction (1-2 ms), the CSV is written when its button is "
        "clicked and each table is one DataFrame call. What is left: the app frame and sidebar, st.plotly_chart "
        "serialising all six charts again (a deep copy and base64 of every array) and Streamlit's own run. Not "
        "tried: running the block/head controls in a fragment (a change to the page itself)."),
    "slider_rerun_512_tokens_ms": (
        "as at 128 tokens, plus the 512 x 512 token map rebuilt and re-sent on every move (about 1.5 MB of JSON "
        "for the page)."),
    "page_512_tokens_s": (
        "py-spy, after the figures were built in one construction (see slider_rerun_128_tokens_ms): nine tenths "
        "of the run is trace() - the eager forward pass at 512 tokens that returns every attention weight "
        "(transformers 5.x gives them only in eager mode) and copying the 6 x 12 x 512 x 512 maps to numpy; the "
        "summaries, the six figures and the tables are the rest."),
    "probe_demo_all_layers_s": (
        "350 logistic-regression fits (7 layers x 10 poolings x 5 folds) on two cores, plus embedding the corpus "
        "and the random-token vectors (the difference from probe_fits_demo_s). py-spy on the thread pool the "
        "fits ran in: scipy's L-BFGS-B step and sklearn's per-iteration checks hold the GIL for about half of "
        "each iteration, so two threads used about 0.8 cores. Now the cells run in joblib's loky worker "
        "processes (one BLAS thread each, the same fits, so the same accuracies; the first probe in a process "
        "starts the workers, about a second), and the corpus passes run block by block into reused buffers "
        "(see matmul_peak_fraction_long). Fits are not capped below convergence silently: probe_capped_fits "
        "counts those that stop at the cap. The random-token vectors were a second forward pass over the corpus "
        "(about 2.3 s); they are now read from the extraction's own pass (extract(random_token_seed=...)), equal "
        "to the separate pass (tested). Not done: warm starts from the previous fold or layer, which would "
        "change the accuracies of the fits that stop at the cap."),
    "probe_fits_demo_s": "the 350 fits alone; see probe_demo_all_layers_s.",
    "corpus_throughput_ratio_demo_batch32": (
        "extract and sentence-transformers run the same forward pass on the same batches; the breakdown group times "
        "each against that bare pass (extract_vs_forward_* and sentence_transformers_vs_forward_*): both add a few "
        "percent to it, so the ratio sits at 1.0 within the run-to-run spread. Tried, after timing the parts: mean "
        "pooling is one batched matrix product and max pooling reads each row's own tokens in place instead of a "
        "masked copy of the batch, which halved the pooling cost; the stacked hidden states stay (one copy per "
        "batch, a few percent)."),
    "corpus_throughput_ratio_demo_batch64": "see corpus_throughput_ratio_demo_batch32.",
    "corpus_throughput_ratio_long_batch32": (
        "both sides run the same arithmetic; extract's forward pass now runs block by block into buffers reused "
        "from batch to batch (see matmul_peak_fraction_long), sentence-transformers' through the model's own "
        "forward, which allocates its 100 MB intermediates afresh every batch. What is left is the run-to-run "
        "spread."),
    "corpus_throughput_ratio_long_batch64": "as at batch 32 (see corpus_throughput_ratio_long_batch32).",
    "matmul_peak_fraction_demo": (
        "short texts (about 12 tokens) give small matmuls whose per-call overhead (tokenizer, padding, Python in "
        "the encoder layers) weighs against the arithmetic; the peak is measured after each run and varies from "
        "run to run (matmul_gflops' spread), and so does the fraction."),
    "matmul_peak_fraction_long": (
        "torch.profiler on one batch of 64 long texts through the model's forward: the matmuls took about two "
        "thirds; fresh allocations took much of the rest - the C library hands the 100 MB feed-forward "
        "intermediates back to the system when freed, so every batch zeroes new pages (addmm into a fresh "
        "output 259 ms, into a reused one 213 ms; GELU 72 against 14 ms), plus torch.stack of every hidden "
        "state. Now clsviz.batched_forward runs the same kernels on the model's own weights into one workspace "
        "(Q, K, V as one product, each block writing straight into the stacked hidden states). What is left: "
        "attention (SDPA), LayerNorm and GELU are memory-bound, and the peak is measured after each run and "
        "varies from run to run (matmul_gflops' spread)."),
    "browser_enter_to_plot_s": (
        "the page reruns the trace and rebuilds and re-sends six charts (see slider_rerun_128_tokens_ms); on a "
        "busy machine the load, not the page, sets the median."),
    "browser_512_tokens_s": (
        "the server's run (page_512_tokens_s: the eager forward pass at 512 tokens, the summaries, ~1.5 MB of "
        "figures) plus Chromium parsing and drawing the 512 x 512 token map."),
    "cold_start_first_plot_s": (
        "the server answers its health check after 1.5-2.5 s; the first plot then waits for torch and transformers "
        "to be imported (here about 2.6 s for torch and 4.8 s for transformers up to BertModel, which pulls in "
        "torch's compiler and distributed modules), the bundled model to be read, the trace and the Overview's "
        "figures. Tried: the model loads in a background thread as the server starts (`make run` starts "
        "`python -m ui.serve`; ui/preload.py). Opened at once, as this figure does, that gains little: imports "
        "hold Python's GIL, so the preload and the server's own start take turns on one core's worth of Python. "
        "Opened a few seconds after the start, as a person does, it gains most of the load: compare "
        "cold_start_opened_later_s with cold_start_opened_later_no_preload_s. Also tried: the Overview draws "
        "without waiting for the anisotropy baseline (measured after the first draw), UMAP's numba warm-up "
        "starts only after it, and the spinner says what is being loaded. The job worker starts with the server "
        "too (so the first background job finds the model loaded), but lowers its priority before it imports "
        "torch (ui/priority.py) and takes only the CPU the server leaves. Since the server stopped running a full "
        "garbage collection after every page run (see visitors_50_interactive_p95_ratio) the figure went from "
        "10.7 s to 8.5 s; what is left is the imports and the model load above, on one core's worth of Python."),
    "embeddings_first_visit_s": (
        "on a fresh server the first projection waits for the bundled model (loading since the server's start), "
        "the demo corpus (896 texts) embedded at every layer x 6 poolings in the job worker, and three PCA fits. "
        "Profiled with py-spy on a loaded machine (load 13-16): the page's thread spent 95% of its time waiting "
        "for the worker's extraction, which at a lower priority got a fraction of a core and ran several times "
        "slower on two torch threads than on one (a preempted second thread stalls the first at every step; "
        "CLSVIZ_JOB_THREADS=1 avoids it on a shared machine). Tried: the worker starts and loads the model "
        "with the server; the vectors come back through shared memory; the PCA preview is drawn before the label "
        "scores; UMAP's code loads from numba's disk cache instead of compiling in every new process; the server "
        "no longer collects garbage after every page run (16.3 s became 13.2 s). On a quiet machine what is left "
        "is the model load and the extraction in the worker, which start with the server and share its two cores "
        "with the server's own start."),
    "corpus_upload_5000_first_projection_s": (
        "embedding 5,000 texts at every layer x 6 poolings (322 MB of float32) is most of it: at extract's "
        "measured rate (extract_demo_texts_per_s) about 13 s on two quiet cores, which leaves about 2 s of the "
        "target for reading the file, returning the vectors and three PCA fits. Tried: the vectors come back "
        "through shared memory (they were pickled through a pipe and unpickled: about 1 s and a second copy), "
        "and the preview no longer waits for the label scores (kNN and silhouette at 7 layers x 3 poolings). On a "
        "loaded machine the lower-priority worker gets what the machine leaves (790 s at load 12 before)."),
    "corpus_upload_5000_s": (
        "after the preview: the label scores (21 kNN / silhouette cells on a 3,000-row sample) and three UMAP "
        "fits of 4,095 points each (the other 905 placed with transform), plus UMAP's import. A seeded UMAP fit "
        "runs on one core and the three used to run one after another; now the job worker fits two panels while "
        "the page fits the first and scores the labels, so both cores work, and numba loads the compiled code "
        "from its disk cache (umap_warm_up_cached_s against umap_warm_up_s)."),
    "job_first_result_s": (
        "value zeroing of 16 tokens computes in about a second; the rest is the page: the run that starts the "
        "job, the panel polling it (every second) and the run that draws the result. Before, the first job started "
        "a worker process that imported torch and loaded the model (the issue saw 55 s of 'Loading the model in "
        "the worker'); the worker now starts with the server and keeps its models between jobs. On a loaded "
        "machine the worker's own start, at a lower priority, can still be under way when the first job comes. Then "
        "(from 5.4 s to about 2 s): after the button starts a job the page waits up to 2 s for it (ui/runner.py "
        "FIRST_LOOK_S), so a short job is drawn by that same run instead of by the panel's next poll and one more "
        "whole run of the page, and the server no longer collects garbage after every run."),
    "finetune_page_defaults_minutes": (
        "the defaults train 4 runs (cls, mean, cls_last, fresh_middle) on 320 texts for 2 epochs, measured at 11 "
        "checkpoints each; profiled with py-spy (one run): 46% in the checkpoint measurements (held-out passes, "
        "per-layer probes, gradient flow), 43% in training's forward and backward passes. The 966 s the issue saw "
        "on a loaded machine came from the worker's two torch threads: at a lower priority its second thread is "
        "preempted and the first waits for it at every operation (at load 17 one run took 147 s on two threads, "
        "34 s on one); CLSVIZ_JOB_THREADS=1 avoids that on a shared machine (a setting, not chosen from the load: "
        "float results differ in their last bits between thread counts). "
        "dynamics.watched_finetune_minutes times the same settings without the page."),
    "peak_rss_512_bert_base_gb": (
        "the bert-base-sized weights (0.44 GB in float32) beside the bundled model, torch, transformers and "
        "Streamlit, plus at 512 tokens the 12 x 12 attention maps and their value-norm weighting (150 MB each in "
        "float32). Tried: trace() copies the maps layer by layer and lets each go (they were held twice), and "
        "the value-norm weighting is one array normalised in place (it made three copies)."),
    "evidence_value_zeroing_ratio": (
        "profiled before the change (torch.profiler, 32 tokens): the T batched reruns of every block in float64 - "
        "addmm 39%, bmm 19%, float64 GELU 19%, copying the weights to float64 17%. Now a block's attention "
        "weights are read once (zeroing a value vector leaves them unchanged) and each (zeroed, receiving) pair's "
        "change is carried through LN1, the feed-forward network, LN2 and the cosine as a change; the [CLS] row "
        "stays float64 throughout, the other rows' two feed-forward products run in float32 on the changes, the "
        "element-wise steps in compiled loops. The floor is the second feed-forward product on T x T rows: T/3 "
        "forward passes of arithmetic per block (about 11 at 32 tokens), run at matmul speed, which the small "
        "matrices of a 32-token forward pass do not reach; the float64 clean run and [CLS] row of each block "
        "come on top."),
    "mixing.value_zeroing_32_ratio": "see evidence_value_zeroing_ratio.",
    "mixing.value_zeroing_128_s": "see evidence_value_zeroing_ratio: at 128 tokens the T x T pairs are 16 times as many.",
    "browser_8_sessions_p50_ratio": (
        "the eight sessions share one server process, whose Python work (building and serialising each page's "
        "figures and tables) holds the GIL, and the two cores with eight Chromium tabs drawing their charts; "
        "with fair sharing every session finishes near the end, so the median is close to the slowest. The "
        "per-rerun Python work was cut (figures in one construction, CSVs on click, see "
        "slider_rerun_128_tokens_ms); what is left is mostly the trace and Chromium's drawing. When the server "
        "stopped collecting garbage after every run (see visitors_50_interactive_p95_ratio), one session got twice "
        "as fast (browser_enter_to_plot_s 1.32 s to 0.67 s) and eight at once faster too (p50 5.6 s to 4.0 s), but "
        "less, so the ratio rose from 4.25 to 6. py-spy on the server over the whole group: its page runs were "
        "active for about 15 s of the group's 108 s (py-spy attached), and its threads otherwise waited; so the rest "
        "of each round is outside the server: eight Chromium tabs building and drawing their plotly charts on the "
        "same two cores (Chromium was not profiled further)."),
    "corpora.ray_vs_local_throughput_ratio": (
        "the 20,000 texts are ten shards of 2,048 shared by two one-CPU actors against torch's two threads "
        "in-process. Timed per shard (commit times): Ray starts in 2-4 s and each actor imports torch and "
        "transformers and loads the model in about 9 s more, so the first two shards arrive after 17 s; from then "
        "the two actors deliver two shards every 5.7 s, 1.3x the in-process rate. About 18 s of the Ray run are "
        "not embedding (Ray's start and stop, the actors' imports and model loads) against 36 s of in-process work, "
        "which puts the ratio at the target's edge; by the same arithmetic it passes 0.8 from about 21,000 texts "
        "and tends to 1.3 on larger corpora. "
        "Fixed: the embedded Ray's object store of 200 MB held one actor back after the first four shards (Ray "
        "Data stops an operator whose finished blocks fill its share of the store; each shard is 33 MB), which "
        "gave 0.57x; the engine now sizes the store for eight finished shards per actor "
        "(clsviz/ray_engine.py object_store_floor_mb)."),
}
"""Figure key -> what limits it and what was tried; shown in the README when its target is missed."""


def _cell(point: dict) -> str:
    if point.get("value") is None:
        return "—"
    return f"{_number(point['value'])} ({_number(point['min'])}–{_number(point['max'])})"


def top_exponent(entry: dict) -> float | None:
    """k between a growth entry's two largest sizes, where fixed costs weigh least."""
    return growth_exponent(entry["sizes"][-2:], [p["value"] for p in entry["seconds"][-2:]])


def growth_reading(k: float | None) -> str:
    """What an exponent says about an operation, in words."""
    if k is None:
        return "—"
    for limit, words in ((0.8, "below linear: fixed costs weigh more than size"), (1.3, "about linear"),
                         (1.7, "between linear and quadratic"), (2.3, "about quadratic")):
        if k < limit:
            return words
    return "steeper than quadratic"


def growth_summary(payload: dict) -> list[str]:
    """One row per operation: the median (min–max) seconds at each size, the fitted k over all
    sizes, and k between the two largest sizes (where fixed costs weigh least) read in words."""
    lines = ["| operation | size counts | seconds at each size: median (min–max) | k (time ∝ size^k) "
             "| k, two largest sizes | reading |", "|---|---|---|---|---|---|"]
    for op, entry in payload.get("growth", {}).items():
        if not entry.get("sizes"):
            lines.append(f"| {op} | {entry.get('unit', '')} | not measured: {entry.get('reason', '')} | — | — | — |")
            continue
        cells = "; ".join(f"{size:,}: {_cell(point)}" for size, point in zip(entry["sizes"], entry["seconds"]))
        k = entry.get("exponent")
        top = top_exponent(entry)
        predicted = entry.get("predicted_512_s")
        if predicted is not None:
            cells += f"; 512: about {_number(predicted)} predicted from k"
        lines.append(f"| {op} | {entry['unit']} | {cells} | {'—' if k is None else f'{k:.2f}'} "
                     f"| {'—' if top is None else f'{top:.2f}'} | {growth_reading(top)} |")
    return lines


def readme_section(payload: dict) -> str:
    """The README's benchmark block: date, machine and load, the table (catalogued figures and the
    other areas' figures that carry a target), what limits each missed target, the growth table."""
    figures = payload.get("figures", {})
    shown = {k: f for k, f in figures.items() if k in FIGURES or (f.get("target") or {}).get("op")}
    lines = [README_START, "", machine_line(payload) + f" Each figure: median of {payload.get('runs_per_figure', '?')}"
             " or more runs, min–max beside it. All figures and notes: `benchmarks/results.md`.", "",
             *figures_table({"figures": shown}), ""]
    missed = [k for k, f in shown.items() if f.get("met") is False]
    if missed:
        lines += ["Targets missed, and what limits them:", ""]
        for key in missed:
            lines.append(f"- `{key}`: {LIMITS.get(key) or shown[key].get('note', '')}")
        lines.append("")
    absent = [k for k, f in shown.items() if f.get("value") is None]
    if absent:
        reasons: dict[str, list[str]] = {}
        for key in absent:
            reasons.setdefault(figures[key].get("reason", ""), []).append(key)
        lines += ["Not measured here:", ""]
        for reason, keys in reasons.items():
            lines.append(f"- {', '.join(f'`{k}`' for k in keys)}: {reason}")
        lines.append("")
    if payload.get("growth"):
        lines += ["How cost grows (fitted exponent k of time ∝ size^k, least squares on log-log over the three "
                  "sizes):", "", *growth_summary(payload), ""]
    else:
        lines += [f"How cost grows ({', '.join(GROWTH)} at three sizes each): not measured in this run.", ""]
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(readme: Path, payload: dict) -> bool:
    """Replace the block between the bench markers in ``readme`` with :func:`readme_section`.
    Returns False (and leaves the file alone) when the markers are not there."""
    text = Path(readme).read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    payload = dict(payload)
    payload["figures"] = _finish(dict(payload.get("figures", {})))
    new = text[:start] + readme_section(payload) + text[end + len(README_END):]
    Path(readme).write_text(new, encoding="utf-8")
    return True
