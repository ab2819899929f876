"""clsviz benchmarks: `make bench` writes benchmarks/results.json and benchmarks/results.md.

    python benchmarks/run.py [--quick] [--only KEY[,KEY]] [--runs N] [--out DIR] [--list] [--readme]

Every figure is the median of several runs (3 unless --runs says more) with their min and max;
a ratio is timed side by side in one process, on equal terms, warm-up excluded for both sides.
A figure whose measurement could not run is written as null with the reason, never dropped.
--only takes group names, figure keys, growth operations or other areas' modules (see --list);
naming an operation (growth.trace, or value_zeroing) or a module runs only that part of its
group. The other figures of an existing results file are kept. --quick shrinks every size for a
smoke run on a busy machine
and writes to benchmarks/quick/ unless --out says otherwise: its figures are not for comparison.
A run that writes benchmarks/results.json (not quick, no --out) also rewrites the README's
benchmark block from it; --readme does only that (and rewrites results.md), from the
results.json already there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks import results as res  # noqa: E402
from benchmarks.timing import Settings  # noqa: E402


def _groups() -> dict:
    """Measurement group name -> function(settings, collector), in the order they run."""
    from benchmarks import (
        browser_sessions,
        external,
        growth,
        library,
        page_waits,
        reruns,
        responsiveness,
        server_waits,
        throughput,
        visitors,
    )

    return {
        "model_load": library.measure_model_load,
        "trace": library.measure_trace,
        "page": reruns.measure_page,
        "throughput": throughput.measure_throughput,
        "breakdown": throughput.measure_breakdown,
        "gpu": throughput.measure_gpu,
        "probe": library.measure_probe,
        "umap": library.measure_umap,
        "growth": growth.measure_growth,
        "browser": browser_sessions.measure_browser,
        "cold_start": server_waits.measure_cold_start,
        "first_visit": page_waits.measure_first_visit,
        "upload": server_waits.measure_upload,
        "app_memory": server_waits.measure_app_memory,
        "load": responsiveness.measure_load,
        "visitors": visitors.measure_visitors,
        "finetune": library.measure_finetune,
        "job_wait": page_waits.measure_job_wait,
        "finetune_page": page_waits.measure_finetune_page,
        "evidence": external.measure_external,
    }


GROUP_NAMES = ("model_load", "trace", "page", "throughput", "breakdown", "gpu", "probe", "umap", "growth", "browser",
               "cold_start", "first_visit", "upload", "app_memory", "load", "visitors", "finetune", "job_wait",
               "finetune_page", "evidence")
EXTERNAL_NAMES = ("mixing", "interventions", "dynamics", "corpora", "lab", "inversion")


def chosen_groups(only: str | None) -> list[str]:
    """The groups to run for ``--only`` (group names, figure keys, growth ops, external modules)."""
    if not only:
        return list(GROUP_NAMES)
    picked = set()
    for item in (s.strip() for s in only.split(",") if s.strip()):
        if item in GROUP_NAMES:
            picked.add(item)
        elif item in res.FIGURES:
            picked.add(res.FIGURES[item].group)
        elif item.removeprefix("growth.") in res.GROWTH:
            picked.add("growth")
        elif item in EXTERNAL_NAMES:
            picked.add("evidence")
        else:
            raise SystemExit(f"--only: unknown key {item!r}. Known: groups {', '.join(GROUP_NAMES)}; "
                             f"external modules {', '.join(EXTERNAL_NAMES)}; or any figure key (see --list).")
    return [g for g in GROUP_NAMES if g in picked]


def chosen_parts(only: str | None) -> frozenset:
    """The growth operations and other areas' modules ``--only`` names, unless it also names
    their whole group (then every part of that group runs)."""
    items = {s.strip() for s in (only or "").split(",") if s.strip()}
    named = {i.removeprefix("growth.") for i in items if i.startswith("growth.")}
    named |= (items - set(GROUP_NAMES)) & set(res.GROWTH)  # "trace", "probe", "umap" name their groups
    growth = set() if "growth" in items else named
    modules = set() if "evidence" in items else items & set(EXTERNAL_NAMES)
    return frozenset(growth | modules)


def _expected(name: str, settings: Settings) -> tuple[list[str], list[str]]:
    """(figure keys, growth operations) that group ``name`` writes under ``settings``."""
    from benchmarks.external import EVIDENCE

    keys = [k for k, spec in res.FIGURES.items() if spec.group == name
            and (k not in EVIDENCE or settings.wants(EVIDENCE[k][0], EXTERNAL_NAMES))]
    ops = [op for op in res.GROWTH if settings.wants(op, res.GROWTH)] if name == "growth" else []
    return keys, ops


def _run_group(name: str, fn, settings: Settings, out: res.Collector, status: dict) -> None:
    print(f"[bench] {name} ... (load average {os.getloadavg()[0]:.1f})", flush=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    before = set(out.figures)
    keys, ops = _expected(name, settings)
    try:
        fn(settings, out)
        status[name] = {"status": "ok"}
    except Exception as exc:  # a failed measurement is recorded with its reason, never hidden
        traceback.print_exc()
        status[name] = {"status": f"failed: {type(exc).__name__}: {exc}"}
    reason = status[name]["status"] if status[name]["status"] != "ok" else "the measurement did not produce it"
    for key in keys:
        if key not in out.figures:
            out.missing(key, reason)
    for op in ops:
        if op not in out.growth:
            out.growth_missing(op, reason)
    status[name]["seconds"] = round(time.perf_counter() - start, 1)
    status[name]["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # 1 min, before/after
    made = sorted(set(out.figures) - before)
    print(f"[bench] {name} done in {status[name]['seconds']} s ({len(made)} figures)", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run (not for comparison)")
    parser.add_argument("--only", help="comma-separated groups, figure keys or growth operations")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; quick: 2)")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json/results.md")
    parser.add_argument("--list", action="store_true", help="list groups and figure keys, then exit")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite the README's benchmark block and results.md from benchmarks/results.json")
    args = parser.parse_args(argv)
    if args.readme:  # results.md too, so both follow the current notes and tables
        payload = json.loads((HERE / "results.json").read_text(encoding="utf-8"))
        res.write(payload, HERE)
        return _readme(payload)
    if args.list:
        for group in GROUP_NAMES:
            keys = [k for k, s in res.FIGURES.items() if s.group == group] + (list(res.GROWTH) if group == "growth" else [])
            print(f"{group}: {', '.join(keys) or '(external modules: ' + ', '.join(EXTERNAL_NAMES) + ')'}")
        return 0
    quick = args.quick or os.environ.get("CLSVIZ_BENCH_QUICK") == "1"
    if quick:
        os.environ["CLSVIZ_BENCH_QUICK"] = "1"  # the external modules read it too
    settings = Settings(quick=quick, runs=max(1, args.runs or (2 if quick else 3)), parts=chosen_parts(args.only))
    folder = args.out or (HERE / "quick" if quick else HERE)
    groups = chosen_groups(args.only)
    previous = {}
    if args.only and (folder / "results.json").exists():
        previous = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    status: dict = {}
    load_before = os.getloadavg()[0]
    registry = _groups()
    current: list[str] = []  # the group running now and those after it
    out = res.Collector(on_checkpoint=lambda: res.write(collect(current), folder))

    def collect(pending: list[str]) -> dict:
        remeasured = tuple(f"{name}." for name in out.context.get("external", {}))  # their old keys go
        kept = {k: v for k, v in previous.get("figures", {}).items() if not k.startswith(remeasured)}
        figures = {**kept, **out.figures}
        growth = {**previous.get("growth", {}), **out.growth}
        stopped = "the run stopped before this was measured"
        for group in pending:  # a run cut short says what it did not reach
            keys, ops = _expected(group, settings)
            figures.update({k: res.missing(stopped, res.FIGURES[k].unit) for k in keys if k not in out.figures})
            growth.update({op: res.Collector.growth_entry_missing(op, stopped) for op in ops if op not in out.growth})
        return {
            "date": res.now(),
            "machine": res.machine(),
            "quick": quick,
            "runs_per_figure": settings.runs,
            "load_average": [load_before, os.getloadavg()[0]],
            "figures": figures,
            "growth": growth,
            "external": {**previous.get("external", {}), **out.context.get("external", {})},
            "groups": {**previous.get("groups", {}), **status},
            "context": {**previous.get("context", {}), **{k: v for k, v in out.context.items() if k != "external"}},
        }

    for i, name in enumerate(groups):
        current[:] = groups[i:]
        _run_group(name, registry[name], settings, out, status)
        res.write(collect(groups[i + 1:]), folder)  # after every group: a stopped run keeps its figures
    payload = collect([])
    json_path, md_path = res.write(payload, folder)
    print(md_path.read_text(encoding="utf-8"))
    print(f"[bench] wrote {json_path} and {md_path}")
    if folder == HERE and not quick:
        _readme(payload)
    return 0


def _readme(payload: dict) -> int:
    readme = ROOT / "README.md"
    if not res.update_readme(readme, payload):
        print(f"[bench] {readme} has no benchmark markers ({res.README_START!r} ... {res.README_END!r}); "
              "left as it is", file=sys.stderr)
        return 1
    print(f"[bench] rewrote the benchmark block of {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
