"""clsviz benchmarks: `make bench` writes benchmarks/results.json and benchmarks/results.md.

Each measurement is a ratio or a time taken side by side in one run, so machine noise
mostly cancels. A measurement whose prerequisites are missing is recorded as null with
the reason, never silently dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.interventions import TARGETS as INTERVENTION_TARGETS  # noqa: E402

# key -> (target description, comparison, target value)
TARGETS = {
    "trace_overhead_ratio": ("<=", 1.5),
    "slider_rerun_ms": ("<=", 50),
    "page_512_tokens_s": ("<=", 0.5),
    "payload_512_tokens_bytes": ("<=", 5_000_000),
    "corpus_throughput_ratio_vs_sentence_transformers": (">=", 1.0),
    "matmul_peak_fraction": (">=", 0.5),
    "umap_2k_warm_s": ("<=", 10),
    "probe_demo_all_layers_s": ("<=", 10),
    "browser_enter_to_plot_s": ("<=", 1.5),
    "peak_rss_512_bert_base_gb": ("<=", 1.5),
    **INTERVENTION_TARGETS,  # the causal tests' speed targets live beside their measurement
}


def best_of(fn, repeat: int = 3) -> float:
    """Smallest wall time of ``repeat`` calls (seconds)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def corpus_texts(n: int) -> list[str]:
    """n texts from the demo corpus (repeated if it is smaller), or generated ones."""
    try:
        from clsviz.corpus import demo_corpus

        texts = list(demo_corpus().texts)
    except Exception:
        rng = np.random.default_rng(0)
        words = (
            "the a cat dog chased film was not bad at all why is token always first model attention "
            "layer sentence good great terrible movie food rain sunny city travel music song played"
        ).split()
        texts = [" ".join(rng.choice(words, size=int(rng.integers(4, 30)))) + "." for _ in range(n)]
    return [texts[i % len(texts)] for i in range(n)]


def machine() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


# --- measurements -------------------------------------------------------------------------


def bench_corpus_throughput(results: dict, notes: dict) -> None:
    """extract (all layers x cls/mean/max) vs sentence-transformers encode, same texts and model."""
    from sentence_transformers import SentenceTransformer

    from clsviz import extract, load_encoder
    from clsviz.encoder import bundled_model_path

    texts = corpus_texts(2000)
    enc = load_encoder()
    st_model = SentenceTransformer(str(bundled_model_path()), device=str(enc.device))
    extract(enc, texts[:64])
    st_model.encode(texts[:64])
    ours, theirs = [], []
    for _ in range(2):  # interleaved so drift hits both sides alike
        start = time.perf_counter()
        pv = extract(enc, texts, poolings=("cls", "mean", "max"), batch_size=64)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        st_model.encode(texts, batch_size=32)
        theirs.append(time.perf_counter() - start)
    results["corpus_throughput_ratio_vs_sentence_transformers"] = min(theirs) / min(ours)
    results["extract_sentences_per_s"] = len(texts) / min(ours)
    results["sentence_transformers_sentences_per_s"] = len(texts) / min(theirs)
    notes["corpus_throughput_ratio_vs_sentence_transformers"] = (
        f"{len(texts)} texts; extract yields {pv.vectors.shape[1]} layers x 3 poolings, "
        "sentence-transformers one mean-pooled vector"
    )

    # Achieved FLOP/s of extract vs a large float32 matmul, same process.
    import torch

    cfg = enc.model.config
    d, layers, inter = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    with enc.lock:
        lengths = [len(x) for x in enc.tokenizer(texts, truncation=True, max_length=enc.info.max_length)["input_ids"]]
    order = sorted(lengths, reverse=True)
    flops = 0.0
    for start in range(0, len(order), 64):
        batch = order[start : start + 64]
        tokens = len(batch) * batch[0]  # padded
        per_token = 2 * layers * (4 * d * d + 2 * d * inter)
        flops += tokens * per_token + len(batch) * layers * 4 * batch[0] ** 2 * d
    extract_flops = flops / min(ours)
    n = 2048
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)
    mm_time = best_of(lambda: torch.mm(a, b), repeat=5)
    matmul_flops = 2 * n**3 / mm_time
    results["matmul_peak_fraction"] = extract_flops / matmul_flops
    results["extract_gflops"] = extract_flops / 1e9
    results["matmul_gflops"] = matmul_flops / 1e9


def bench_model_load(results: dict, notes: dict) -> None:
    code = (
        "import time,os; os.environ['HF_HUB_OFFLINE']='1'; t=time.perf_counter();"
        "from clsviz import load_encoder; load_encoder(); print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    results["model_load_s"] = float(out.stdout.strip().splitlines()[-1])
    notes["model_load_s"] = "bundled model, fresh process, imports included"


def bench_peak_rss(results: dict, notes: dict) -> None:
    """Peak memory of tracing 512 tokens through a bert-base-sized model (random weights).

    The model is built and saved by one process; a fresh process loads it and traces, so the
    peak is what a person's process holds, not the builder's extra copy of the weights.
    """
    import tempfile

    folder = tempfile.mkdtemp(prefix="clsviz-bert-base-")
    build = (
        "import sys, torch; from transformers import AutoTokenizer, BertConfig, BertModel;"
        "from clsviz.encoder import bundled_model_path; torch.manual_seed(0);"
        "BertModel(BertConfig()).save_pretrained(sys.argv[1]);"
        "AutoTokenizer.from_pretrained(str(bundled_model_path())).save_pretrained(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", build, folder], capture_output=True, text=True, check=True, cwd=ROOT)
    measure = (
        "import sys, resource; from clsviz import load_encoder, trace;"
        "enc = load_encoder(sys.argv[1]);"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "t = trace(enc, 'word ' * 600); assert t.seq_len == 512;"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, base / 1024 / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", measure, folder], capture_output=True, text=True, check=True, cwd=ROOT)
    peak, base = map(float, out.stdout.strip().splitlines()[-1].split())
    results["peak_rss_512_bert_base_gb"] = peak
    notes["peak_rss_512_bert_base_gb"] = (
        f"peak RSS of a fresh process that loads a saved bert-base-sized model and traces 512 tokens; "
        f"{base:.2f} GB after loading, before the trace"
    )


def bench_trace_overhead(results: dict, notes: dict) -> None:
    """trace() plus every Attention-page metric vs one bare forward pass with weights and states."""
    import torch

    from clsviz import load_encoder, trace
    from clsviz.attention import summarize

    enc = load_encoder()
    text = (
        "Why is the [CLS] token always first, and would the average of all the other tokens "
        "do just as well for classification?"
    )
    ids = enc.tokenizer(text, return_tensors="pt")
    seq_len = ids["input_ids"].shape[1]

    def bare():
        with torch.inference_mode():
            enc.eager_model(**ids, output_attentions=True, output_hidden_states=True)

    def ours():
        summarize(trace(enc, text))

    bare()
    ours()
    bare_s, ours_s = [], []
    for _ in range(5):
        bare_s.append(best_of(bare, 3))
        ours_s.append(best_of(ours, 3))
    results["trace_overhead_ratio"] = min(ours_s) / min(bare_s)
    notes["trace_overhead_ratio"] = f"{seq_len}-token sentence, bundled model, best of 15 each"


def _attention_apptest():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.switch_page("pages/1_Attention.py")
    return at


def _payload_bytes(at) -> int:
    return sum(len(el.proto.spec) for el in at.get("plotly_chart"))


def bench_attention_page(results: dict, notes: dict) -> None:
    """Server time of Attention-page reruns (AppTest): slider change, and a new 512-token text."""
    at = _attention_apptest()
    at.session_state["clsviz.sentences"] = "Why is the [CLS] token always first?"
    at.run()
    if at.exception:
        raise RuntimeError(f"Attention page failed: {at.exception[0].value}")
    times = []
    for value in (1, 2, 3, 4, 5, 6) * 2:
        at.slider(key="attention.layer").set_value(value)
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    results["slider_rerun_ms"] = float(np.median(times) * 1000)
    notes["slider_rerun_ms"] = "median of 12 layer-slider changes, cached trace, AppTest run time"

    rng = np.random.default_rng(1)
    words = "the cat sat on a mat while dogs ran past quickly and birds sang songs all day".split()
    page_times, payloads = [], []
    for i in range(3):
        text = " ".join(rng.choice(words, size=700)) + f" run {i}"  # new text each time
        at512 = _attention_apptest()
        at512.session_state["clsviz.sentences"] = text
        at512.session_state["clsviz.max_tokens"] = 512
        at512.run()  # first run includes model load on a cold cache: not counted
        at512.session_state["clsviz.sentences"] = text + " again"
        start = time.perf_counter()
        at512.run()
        page_times.append(time.perf_counter() - start)
        if at512.exception:
            raise RuntimeError(f"Attention page failed at 512 tokens: {at512.exception[0].value}")
        payloads.append(_payload_bytes(at512))
    results["page_512_tokens_s"] = float(np.median(page_times))
    results["payload_512_tokens_bytes"] = int(max(payloads))
    notes["page_512_tokens_s"] = "median of 3 runs, each on a new 512-token text (trace included)"
    notes["payload_512_tokens_bytes"] = "sum of the plotly figure specs the page sends"


def bench_probe(results: dict, notes: dict) -> None:
    """The pooling probe's full grid (every layer x every pooling, 5-fold CV) on the demo corpus."""
    from clsviz import extract, load_encoder
    from clsviz.corpus import demo_corpus
    from clsviz.experiments import RANDOM_TOKEN, default_poolings, random_token_vectors, run_probe

    enc, corpus = load_encoder(), demo_corpus()
    poolings = [s for s in default_poolings(enc.info.has_pooler) if s != RANDOM_TOKEN]
    start = time.perf_counter()
    pv = extract(enc, corpus.texts, poolings, labels=corpus.labels)
    rnd = random_token_vectors(enc, corpus.texts)
    results["probe_extract_demo_s"] = time.perf_counter() - start
    result = None

    def grid():
        nonlocal result
        result = run_probe(pv, "topic", random_token=rnd, folds=5)

    results["probe_demo_all_layers_s"] = best_of(grid, repeat=2)
    notes["probe_demo_all_layers_s"] = (
        f"{result.n} texts, {len(result.table)} cells ({pv.vectors.shape[1]} layers x {len(poolings) + 1} "
        f"poolings), 5 folds, {enc.info.hidden_size} dims, label 'topic'; extraction (probe_extract_demo_s) "
        "is not included"
    )


def bench_umap(results: dict, notes: dict) -> None:
    """UMAP fits (cosine) after the numba warm-up, and PCA for the preview."""
    from clsviz.projection import Projector, warm_up

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    warm_up()
    results["umap_warm_up_s"] = time.perf_counter() - start
    x2k = rng.standard_normal((2000, 384)).astype(np.float32)
    x10k = rng.standard_normal((10000, 384)).astype(np.float32)
    results["umap_2k_warm_s"] = best_of(lambda: Projector("umap", random_state=0).fit_transform(x2k), 1)
    results["umap_10k_warm_s"] = best_of(lambda: Projector("umap", random_state=0).fit_transform(x10k), 1)
    results["pca_2k_s"] = best_of(lambda: Projector("pca").fit_transform(x2k), 3)
    code = (
        "import time,numpy as np; from clsviz.projection import Projector;"
        "x=np.random.default_rng(0).standard_normal((10000,384)).astype(np.float32);"
        "t=time.perf_counter(); Projector('umap', random_state=0).fit_transform(x); print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    results["umap_10k_cold_s"] = float(out.stdout.strip().splitlines()[-1])
    notes["umap_2k_warm_s"] = "2,000 x 384 Gaussian points, cosine metric, fixed seed, after warm_up()"
    notes["umap_10k_cold_s"] = "fresh process, numba compilation included"


def bench_browser(results: dict, notes: dict) -> None:
    """Headless Chromium: Ctrl+Enter on a new sentence -> Attention heatmap with its tokens."""
    import shutil

    if not shutil.which("chromium"):
        raise RuntimeError("chromium is not installed (make test installs it when run as root)")
    from benchmarks.browser_sessions import measure

    out = measure(sessions=8, rounds=5)
    results["browser_enter_to_plot_s"] = out["single_session"]["p50_s"]
    results["browser_single_p95_s"] = out["single_session"]["p95_s"]
    results["browser_8_sessions_p50_s"] = out["concurrent_sessions"]["p50_s"]
    results["browser_8_sessions_p95_s"] = out["concurrent_sessions"]["p95_s"]
    results["browser_8_sessions_p50_ratio"] = out["p50_ratio_concurrent_vs_single"]
    notes["browser_enter_to_plot_s"] = "median of 5 new sentences, one session (benchmarks/browser_sessions.py)"
    notes["browser_8_sessions_p50_s"] = "8 sessions typing a new sentence at the same moment, 5 rounds"


def bench_finetune(results: dict, notes: dict) -> None:
    """Minutes of the fine-tune mode with the page's defaults: 400 demo texts, 2 epochs, 4 poolings."""
    from clsviz import load_encoder
    from clsviz.corpus import demo_corpus
    from clsviz.experiments.finetune import FINETUNE_POOLINGS, run_finetune

    enc, corpus = load_encoder(), demo_corpus()
    start = time.perf_counter()
    res = run_finetune(enc, corpus.texts, corpus.labels["topic"], epochs=2, max_texts=400)
    results["finetune_demo_minutes"] = (time.perf_counter() - start) / 60
    notes["finetune_demo_minutes"] = (
        f"400 demo texts (label 'topic'), 2 epochs, poolings {', '.join(FINETUNE_POOLINGS)}, on {enc.info.device}; "
        "held-out accuracy: "
        + ", ".join(f"{r.pooling} {r.heldout_accuracy:.1%}" for r in res.table.itertuples())
    )


def bench_interventions(results: dict, notes: dict) -> None:
    """The causal tests on [CLS] (benchmarks/interventions.py): the knockout sweep on the demo
    corpus and head ablation on 200 texts, each beside a bare forward pass of the same texts."""
    from benchmarks.interventions import measure

    out = measure()
    for key, value in out.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            results[key] = value
    notes["knockout_sweep_demo_s"] = f"{out['knockout_texts']} demo texts, label 'topic'; {out['knockout_finding']}"
    notes["head_ablation_200_s"] = f"{out['head_ablation_texts']} demo texts, mean ablation; {out['head_ablation_finding']}"
    notes["bench_interventions"] = f"{out['notes']} Load average (1 min) during the run: {out['load_average_1min']}."


MEASUREMENTS = [
    bench_model_load,
    bench_trace_overhead,
    bench_attention_page,
    bench_corpus_throughput,
    bench_umap,
    bench_peak_rss,
    bench_probe,
    bench_browser,
    bench_finetune,
    bench_interventions,
]


def write_markdown(payload: dict, path: Path) -> None:
    res, notes, mach = payload["results"], payload["notes"], payload["machine"]
    lines = [
        "| key | value | target | met |",
        "|---|---|---|---|",
    ]
    for key, value in res.items():
        target = TARGETS.get(key)
        if value is None:
            shown, met = "—", "not measured"
        else:
            shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
            met = ""
            if target:
                op, limit = target
                ok = value <= limit if op == "<=" else value >= limit
                met = "yes" if ok else "**no**"
        tgt = f"{target[0]} {target[1]:,}" if target else ""
        lines.append(f"| `{key}` | {shown} | {tgt} | {met} |")
    lines.append("")
    for key, note in notes.items():
        lines.append(f"- `{key}`: {note}")
    lines.append("")
    lines.append(
        f"Measured {payload['date']} on {mach.get('cpu_model', mach['processor'])}, "
        f"{mach['cpu_count']} cores, torch {mach['torch']} ({mach['torch_threads']} threads)"
        + (f", GPU {mach['cuda']}" if mach.get("cuda") else ", no GPU")
        + "."
    )
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated measurement function names (bench_*)")
    args = parser.parse_args(argv)
    chosen = MEASUREMENTS
    if args.only:
        wanted = set(args.only.split(","))
        chosen = [m for m in MEASUREMENTS if m.__name__ in wanted]
    out_json = HERE / "results.json"
    previous = json.loads(out_json.read_text()) if out_json.exists() else {"results": {}, "notes": {}}
    results = dict(previous.get("results", {})) if args.only else {}
    notes = dict(previous.get("notes", {})) if args.only else {}
    for key in TARGETS:
        results.setdefault(key, None)
    for fn in chosen:
        print(f"[bench] {fn.__name__} ...", flush=True)
        start = time.perf_counter()
        try:
            notes.pop(fn.__name__, None)
            fn(results, notes)
        except Exception as exc:  # a failed measurement is reported, not hidden
            notes[fn.__name__] = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        print(f"[bench] {fn.__name__} done in {time.perf_counter() - start:.1f} s", flush=True)
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "results": results,
        "notes": notes,
        "targets": {k: {"op": op, "value": v} for k, (op, v) in TARGETS.items()},
    }
    out_json.write_text(json.dumps(payload, indent=2) + "\n")
    write_markdown(payload, HERE / "results.md")
    print((HERE / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
