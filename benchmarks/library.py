"""Library-level figures: model load, trace overhead, the probe end to end, UMAP, fine-tuning.

Each ``measure_*(settings, out)`` writes its figures into a :class:`benchmarks.results.Collector`.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile

from benchmarks.inputs import ROOT, bert_base_folder
from benchmarks.results import Collector
from benchmarks.timing import Settings, pair_ratios, repeat, side_by_side, timed

__all__ = ["measure_finetune", "measure_model_load", "measure_probe", "measure_trace", "measure_umap"]

TRACE_TEXT = (
    "Why is the [CLS] token always first, and would the average of all the other tokens "
    "do just as well for classification?"
)

_LOAD = (
    "import json, sys, time; t0 = time.perf_counter(); from clsviz import load_encoder; t1 = time.perf_counter();"
    "load_encoder(sys.argv[1] or None); t2 = time.perf_counter();"
    "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1}))"
)


def _child_json(code: str, *args: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True,
                          env=None if env is None else {**os.environ, **env})
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_model_load(settings: Settings, out: Collector) -> None:
    """load_encoder() in a fresh process (torch and transformers imports included, as a person
    waits for them): the bundled model and a saved bert-base-sized one."""
    runs = [_child_json(_LOAD, "") for _ in range(settings.runs)]
    out.add("model_load_bundled_s", [r["load_s"] for r in runs],
            f"fresh process, load_encoder() of the bundled model incl. the torch/transformers imports it makes; "
            f"importing clsviz before it took {min(r['import_s'] for r in runs):.2f} s more")
    with bert_base_folder() as folder:
        runs = [_child_json(_LOAD, str(folder)) for _ in range(settings.runs)]
    out.add("model_load_bert_base_s", [r["load_s"] for r in runs],
            "fresh process, load_encoder(folder) of a saved BertModel with bert-base's config (random weights, "
            "110M parameters, safetensors), imports included; the folder is deleted afterwards")


def measure_trace(settings: Settings, out: Collector) -> None:
    """trace() plus the Attention page's summary (plain, and value-norm weighted) against one
    bare eager forward pass with attentions and hidden states, on the same input ids."""
    import torch

    from clsviz import load_encoder, trace
    from clsviz.attention import summarize
    from clsviz.mixing import attention_weights
    from clsviz.tracing import tokenize

    enc = load_encoder()
    ids_list = tokenize(enc, TRACE_TEXT).input_ids
    ids = torch.as_tensor(ids_list, device=enc.device)[None]
    if list(trace(enc, TRACE_TEXT).input_ids) != list(ids_list):
        raise RuntimeError("trace() and the bare pass would not see the same input ids")
    inner = 5  # one timed unit = 5 calls: a single ~10 ms call is below the clock's noise on a busy machine

    def bare():
        for _ in range(inner):
            with torch.inference_mode():
                enc.eager_model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True,
                                output_hidden_states=True)

    def plain():
        for _ in range(inner):
            summarize(trace(enc, TRACE_TEXT))

    def value_norm():
        for _ in range(inner):
            t = trace(enc, TRACE_TEXT)
            summarize(t, attention_weights(enc, t, "value_norm"), method="value_norm")

    runs = settings.pick(max(7, settings.runs), settings.runs)
    times = side_by_side({"bare": bare, "plain": plain, "value_norm": value_norm}, runs, warmup=1)
    note = (f"{len(ids_list)}-token sentence, bundled model; each side {inner} calls per run, {runs} runs interleaved "
            "(order reversed every run), warm-up excluded; the bare pass is eager_model(same ids, output_attentions, "
            "output_hidden_states) under inference_mode")
    out.add("trace_overhead_ratio", pair_ratios(times["plain"], times["bare"]),
            note + "; ours = trace() + summarize()")
    out.add("trace_overhead_value_norm_ratio", pair_ratios(times["value_norm"], times["bare"]),
            note + "; ours = trace() + value-norm weights + summarize()")


def measure_probe(settings: Settings, out: Collector) -> None:
    """The pooling probe end to end on the demo corpus: extraction of every pooling, the
    random-token vectors, then every layer x pooling with 5-fold CV; and how many fits stopped
    at the iteration cap."""
    from clsviz import extract, load_encoder
    from clsviz.corpus import demo_corpus, stratified_rows
    from clsviz.experiments import RANDOM_TOKEN, default_poolings, run_probe

    enc, corpus = load_encoder(), demo_corpus()
    if settings.quick:
        corpus = corpus.subset(stratified_rows(list(corpus.labels["topic"]), 200, seed=0))
    poolings = [s for s in default_poolings(enc.info.has_pooler) if s != RANDOM_TOKEN]
    extract(enc, corpus.texts[:32], poolings)  # warm-up (kernels, allocator), not timed
    totals, fits_only, result = [], [], None
    for _ in range(settings.runs):
        holder = {}

        def vectors(holder=holder):  # the random tokens from the same pass, as the page's probe reads them
            holder["pv"] = extract(enc, corpus.texts, poolings, labels=corpus.labels, random_token_seed=0)
            holder["rnd"] = holder["pv"].random_token

        def fit(holder=holder):
            holder["result"] = run_probe(holder["pv"], "topic", random_token=holder["rnd"], folds=5)

        extraction = timed(vectors)
        fits = timed(fit)
        result = holder["result"]
        totals.append(extraction + fits)
        fits_only.append(fits)
    cells = len(result.table)
    shape = (f"{result.n} texts, {cells} cells ({cells // len(result.table['pooling'].unique())} layers x "
             f"{result.table['pooling'].nunique()} poolings), 5 folds, {enc.info.hidden_size} dims, label 'topic'")
    out.add("probe_demo_all_layers_s", totals,
            f"end to end: extract (the random-token vectors read from the same pass) + probe; {shape}")
    out.add("probe_fits_demo_s", fits_only, f"the probe's fits only (vectors ready); {shape}")
    out.add("probe_capped_fits", [result.capped_fits] * len(totals),
            f"{result.capped_fits} of {result.fits} fits stopped at the iteration cap "
            f"({result.fits - result.capped_fits} converged); the page says so under the probe")


_UMAP_CHILD = (
    "import json, sys, time, numpy as np; from clsviz.projection import Projector, warm_up;"
    "n = int(sys.argv[2]); x = np.random.default_rng(0).standard_normal((n, 384)).astype(np.float32);"
    "t = time.perf_counter();"
    "warm_up() if sys.argv[1] == 'warm_up' else Projector('umap', random_state=0).fit_transform(x);"
    "print(json.dumps({'s': time.perf_counter() - t}))"
)


def measure_umap(settings: Settings, out: Collector) -> None:
    """UMAP (cosine): numba warm-up and a cold fit each in a fresh process; warm fits; PCA."""
    import numpy as np

    from clsviz.projection import Projector, warm_up

    small, large = settings.pick((2000, 10_000), (300, 1000))
    rng = np.random.default_rng(0)
    x_small = rng.standard_normal((small, 384)).astype(np.float32)
    x_large = rng.standard_normal((large, 384)).astype(np.float32)
    # A fresh process on a machine whose numba cache is empty compiles umap-learn's code; a later
    # process loads it from the cache (clsviz.jit_cache). Each run gets a cache folder of its own.
    cold, cached, cold_fit, cached_fit = [], [], [], []
    for _ in range(settings.runs):
        with tempfile.TemporaryDirectory() as folder:
            env = {"NUMBA_CACHE_DIR": folder}
            cold.append(_child_json(_UMAP_CHILD, "warm_up", "0", env=env)["s"])
            cached.append(_child_json(_UMAP_CHILD, "warm_up", "0", env=env)["s"])
        with tempfile.TemporaryDirectory() as folder:
            env = {"NUMBA_CACHE_DIR": folder}
            cold_fit.append(_child_json(_UMAP_CHILD, "fit", str(large), env=env)["s"])
            cached_fit.append(_child_json(_UMAP_CHILD, "fit", str(large), env=env)["s"])
    out.add("umap_warm_up_s", cold, "clsviz.projection.warm_up() in a fresh process, numba's cache empty (the first "
            "process on a machine: numba compiles umap-learn's code)")
    out.add("umap_warm_up_cached_s", cached, "the same in the next fresh process, which loads the compiled code from "
            "numba's on-disk cache (clsviz.jit_cache) instead of compiling it")
    out.add("umap_10k_cold_s", cold_fit,
            f"{large:,} x 384 Gaussian points, fresh process, numba's cache empty (compilation included)")
    out.add("umap_10k_cold_cached_s", cached_fit,
            f"{large:,} x 384 Gaussian points, fresh process, the compiled code loaded from numba's on-disk cache")
    warm_up()
    note = "x 384 Gaussian points, cosine metric, fixed seed, after warm_up()"
    out.add("umap_2k_warm_s", repeat(lambda: Projector("umap", random_state=0).fit_transform(x_small), settings.runs, 0),
            f"{small:,} {note}")
    out.add("umap_10k_warm_s", repeat(lambda: Projector("umap", random_state=0).fit_transform(x_large), settings.runs, 0),
            f"{large:,} {note}")
    out.add("pca_2k_s", repeat(lambda: Projector("pca").fit_transform(x_small), max(settings.runs, 5)),
            f"{small:,} x 384, PCA (the Embeddings page's preview)")


def measure_finetune(settings: Settings, out: Collector) -> None:
    """The fine-tune mode with the page's defaults (400 demo texts, 2 epochs, 4 poolings)."""
    from clsviz import load_encoder
    from clsviz.corpus import demo_corpus
    from clsviz.experiments.finetune import FINETUNE_POOLINGS, run_finetune

    enc, corpus = load_encoder(), demo_corpus()
    texts, epochs = settings.pick((400, 2), (40, 1))
    # The plain fine-tune, without the watched run's checkpoints (benchmarks/dynamics.py times those).
    extra = {"checkpoints": 0} if "checkpoints" in inspect.signature(run_finetune).parameters else {}
    minutes, res = [], None
    for _ in range(settings.runs):
        holder = {}
        seconds = timed(lambda holder=holder: holder.update(res=run_finetune(
            enc, corpus.texts, corpus.labels["topic"], epochs=epochs, max_texts=texts, **extra)))
        minutes.append(seconds / 60)
        res = holder["res"]
    out.add("finetune_demo_minutes", minutes,
            f"{texts} demo texts (label 'topic'), {epochs} epoch(s), poolings {', '.join(FINETUNE_POOLINGS)}, "
            f"{'no checkpoints, ' if extra else ''}on "
            f"{enc.info.device}; held-out accuracy of the last run: "
            + ", ".join(f"{r.pooling} {r.heldout_accuracy:.1%}" for r in res.table.itertuples()))
    _measure_demo_classifier(enc, settings, out)


def _measure_demo_classifier(enc, settings: Settings, out: Collector) -> None:
    """The one-click demo classifier of the bundled model at the app's settings, trained afresh
    into an empty folder on each run (a saved one would be reused at once)."""
    import tempfile

    from clsviz.experiments.demo_classifier import DEMO_SETTINGS, demo_classifier

    texts, epochs = settings.pick((DEMO_SETTINGS["max_texts"], DEMO_SETTINGS["epochs"]), (40, 1))
    minutes, made = [], None
    for _ in range(settings.runs):
        with tempfile.TemporaryDirectory() as root:
            holder = {}
            seconds = timed(lambda holder=holder, root=root: holder.update(made=demo_classifier(
                enc, root=root, max_texts=texts, epochs=epochs)))
            minutes.append(seconds / 60)
            made = holder["made"]
    accuracy = float(made.run.table["heldout_accuracy"].iloc[0])
    out.add("demo_classifier_minutes", minutes,
            f"{texts} demo texts (label 'sentiment'), {epochs} epoch(s), [CLS] through the family's head, saved; "
            f"on {enc.info.device}; held-out accuracy of the last run {accuracy:.1%}")
