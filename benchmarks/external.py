"""The benchmark modules of other areas, folded into results.json: benchmarks/mixing.py,
interventions.py, dynamics.py, corpora.py and inversion.py, each with ``measure() -> dict``.

Their figures are kept under ``<module>.<key>`` (nested dicts flattened with dots). A number
with ``<key>_min`` / ``<key>_max`` siblings, or a dict with a median (or value) and min and max,
becomes a figure with its spread; any other number is kept as the single value the module
reports (``runs`` unknown, no spread); ``None`` is a figure the module could not measure (its
reason from the module's ``notes[key]``). Strings, lists and machine details go to the module's
context. The new evidence is summarised as ratios to one bare forward pass on the same input
(``evidence_*_ratio``). A module that is absent from this checkout, or fails, is recorded with
the reason. ``--only mixing`` (any of MODULES) runs only the modules named; the results file is
saved after each module.
"""

from __future__ import annotations

import importlib
import inspect
import time

from benchmarks.results import Collector
from benchmarks.timing import Settings

__all__ = ["EVIDENCE", "MODULES", "fold", "measure_external"]

MODULES = ("mixing", "interventions", "dynamics", "corpora", "lab", "inversion")

EVIDENCE = {
    "evidence_value_zeroing_ratio": ("mixing", "value_zeroing_32_ratio"),
    "evidence_alti_ratio": ("mixing", "alti_32_ratio"),
    "evidence_integrated_gradients_ratio": ("mixing", "integrated_gradients_64_steps_32_ratio"),
    "evidence_gradient_flow_ratio": ("dynamics", "gradient_flow_ratio"),
    "evidence_knockout_sweep_ratio": ("interventions", "knockout_ratio_to_forward"),
    "evidence_head_ablation_ratio": ("interventions", "head_ablation_ratio_to_forward"),
}
"""Summary figure -> (module, key in its measure() output)."""

CONTEXT_KEYS = {"device", "cuda", "cpu_count", "torch_threads", "platform", "runs", "load_average_before",
                "load_average_after", "load_average_1min", "notes", "findings", "targets", "settings", "texts"}
QUICK_KWARGS = {"finetune": False, "long_sizes": (), "long_runs": 1, "runs": 2, "repeat": 3}
"""Arguments a module's measure() gets in a quick run, where its signature has them."""


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _spread_dict(value: dict) -> dict | None:
    """A figure from {median|value|median_s, min|min_s, max|max_s[, runs]}, or None."""
    centre = next((value[k] for k in ("value", "median", "median_s") if k in value), None)
    low = next((value[k] for k in ("min", "min_s") if k in value), None)
    high = next((value[k] for k in ("max", "max_s") if k in value), None)
    if not all(_number(v) for v in (centre, low, high)):
        return None
    return {"value": float(centre), "min": float(low), "max": float(high), "runs": value.get("runs"), "unit": ""}


def _flatten(raw: dict, prefix: str = "") -> tuple[dict, dict]:
    """(figures, context) of one module's output, keys flattened with dots."""
    figures, context = {}, {}
    for key, value in raw.items():
        flat = f"{prefix}{key}"
        if key in CONTEXT_KEYS:
            context[flat] = value
        elif value is None:  # measured by the module but could not run: a figure without a value
            reason = (raw.get("notes") or {}).get(key) if isinstance(raw.get("notes"), dict) else None
            figures[flat] = {"value": None, "min": None, "max": None, "runs": 0, "unit": "",
                             "reason": reason or "the module could not measure it"}
        elif isinstance(value, dict):
            fig = _spread_dict(value)
            if fig is not None:
                figures[flat] = fig
            else:
                sub_figures, sub_context = _flatten(value, flat + ".")
                figures.update(sub_figures)
                context.update(sub_context)
        elif _number(value) and not (key.endswith(("_min", "_max")) and key[:-4] in raw):
            low, high = raw.get(f"{key}_min"), raw.get(f"{key}_max")
            if _number(low) and _number(high):
                figures[flat] = {"value": float(value), "min": float(low), "max": float(high),
                                 "runs": raw.get("runs"), "unit": ""}
            else:
                figures[flat] = {"value": float(value), "min": None, "max": None, "runs": None, "unit": "",
                                 "note": "one value as the module reports it (no spread)"}
        elif not _number(value):
            context[flat] = value
    return figures, context


def fold(name: str, raw: dict, targets: dict | None = None) -> tuple[dict, dict]:
    """(figures keyed ``name.key``, context) of module ``name``'s ``measure()`` output; the
    module's own TARGETS ({key: (op, value)}) become the figures' targets."""
    figures, context = _flatten(raw)
    out = {}
    for key, fig in figures.items():
        fig.setdefault("note", "")
        fig["note"] = (f"from benchmarks/{name}.py; " + fig["note"]).rstrip("; ")
        if targets and key in targets:
            op, value = targets[key]
            fig["target"] = {"op": op, "value": value}
        out[f"{name}.{key}"] = fig
    return out, context


def _measure_module(name: str, settings: Settings) -> tuple[dict | None, dict]:
    """(module output or None, status record)."""
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"benchmarks.{name}":
            return None, {"status": "absent", "reason": f"benchmarks/{name}.py is not in this checkout"}
        return None, {"status": "failed", "reason": f"import failed: {exc}"}
    kwargs = {}
    if settings.quick:
        params = inspect.signature(module.measure).parameters
        kwargs = {k: v for k, v in QUICK_KWARGS.items() if k in params}
    start = time.perf_counter()
    try:
        raw = module.measure(**kwargs)
    except Exception as exc:  # a failing module is recorded; the other figures still come out
        return None, {"status": "failed", "reason": f"measure() failed: {type(exc).__name__}: {exc}"}
    record = {"status": "measured", "seconds": round(time.perf_counter() - start, 1), "arguments": kwargs}
    record["targets"] = {k: list(v) for k, v in getattr(module, "TARGETS", {}).items()}
    return raw, record


def measure_external(settings: Settings, out: Collector) -> None:
    """Run every present module, fold its figures, then the evidence summary ratios."""
    records = {}
    for name in MODULES:
        if not settings.wants(name, MODULES):
            continue
        raw, record = _measure_module(name, settings)
        if raw is not None:
            figures, context = fold(name, raw, {k: tuple(v) for k, v in record["targets"].items()})
            out.figures.update(figures)
            record["context"] = context
        records[name] = record
        out.context["external"] = records
        out.checkpoint()
    for key, (module, source) in EVIDENCE.items():
        if module not in records:
            continue
        fig = out.figures.get(f"{module}.{source}")
        if fig is not None:
            copied = {k: v for k, v in fig.items() if k not in ("target", "met")}  # the catalogue's target applies
            out.figures[key] = {**copied, "note": f"= {module}.{source}; {fig.get('note', '')}".rstrip("; ")}
        elif records[module]["status"] != "measured":
            out.missing(key, records[module]["reason"])
        else:
            out.missing(key, f"benchmarks/{module}.py ran but reported no '{source}'")
