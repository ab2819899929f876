"""How cost grows: each core operation timed at three sizes, with the fitted exponent k of
time ~ size^k (least squares on log-log), so a reader sees what is quadratic, what is linear and
where the app will hurt first.

Tokens: 32 / 128 / 512 (trace, the Attention page). Value zeroing: 32 / 128 / 256 tokens, because
its cost grows faster than T^2 (T block reruns per block, each O(T) to O(T^2)): three runs at 512
tokens would take a large part of an hour on two cores, so the entry gives the time at 512
extrapolated from the two largest sizes instead. Texts: 1k / 3k / 10k for extract and the probe
(100k texts of extraction would take tens of minutes per run on two cores;
benchmarks/corpora.py measures 100k once, in shards). Points: 1k / 3k / 10k for UMAP. Only the smallest size of each operation gets an untimed
warm-up run: by then the kernels are warm for the larger ones. The results file is saved after
each operation, so a run stopped midway keeps what it measured.
"""

from __future__ import annotations

from benchmarks.inputs import demo_texts, sentence_of
from benchmarks.results import Collector, top_exponent
from benchmarks.timing import Settings, repeat

__all__ = ["measure_growth", "predict_512", "value_zeroing_function"]


def _tokens(settings: Settings) -> list[int]:
    return settings.pick([32, 128, 512], [16, 32, 64])


def _texts(settings: Settings) -> list[int]:
    return settings.pick([1000, 3000, 10_000], [100, 200, 400])


def _trace(settings: Settings, out: Collector, enc) -> None:
    from clsviz import trace

    sizes = _tokens(settings)
    texts = {n: sentence_of(n, seed=n) for n in sizes}
    runs = [repeat(lambda n=n: trace(enc, texts[n]), settings.runs) for n in sizes]
    out.grow("trace", sizes, runs, "trace() of one sentence of exactly that many tokens, bundled model")


def _attention_page(settings: Settings, out: Collector) -> None:
    from benchmarks.reruns import attention_apptest, new_text_seconds

    sizes, runs = _tokens(settings), []
    for n in sizes:
        at = attention_apptest(sentence_of(n, seed=1000 + n), n)
        runs.append([new_text_seconds(at, sentence_of(n, seed=2000 + n + i)) for i in range(settings.runs)])
    out.grow("attention_page", sizes, runs, "AppTest run of the Attention page on a new text of that many tokens "
                                            "(trace, summaries, every figure), model loaded")


def _warmup(n: int, sizes: list[int]) -> int:
    """One untimed warm-up run before the smallest size only."""
    return 1 if n == sizes[0] else 0


def _extract(settings: Settings, out: Collector, enc) -> None:
    from clsviz import extract

    sizes = _texts(settings)
    texts = {n: demo_texts(n) for n in sizes}
    runs = [repeat(lambda n=n: extract(enc, texts[n], batch_size=32), settings.runs, _warmup(n, sizes))
            for n in sizes]
    out.grow("extract", sizes, runs, "extract() of that many demo texts (short; every layer x cls/mean/max, "
                                     "batch 32). 100k texts: see benchmarks/corpora.py (shards, one run)")


def _umap(settings: Settings, out: Collector) -> None:
    import numpy as np

    from clsviz.projection import Projector, warm_up

    warm_up()
    sizes = _texts(settings)
    rng = np.random.default_rng(0)
    runs = []
    for n in sizes:
        x = rng.standard_normal((n, 384)).astype(np.float32)
        runs.append(repeat(lambda x=x: Projector("umap", random_state=0).fit_transform(x), settings.runs, 0))
    out.grow("umap", sizes, runs, "UMAP (cosine, fixed seed) of that many Gaussian 384-dim points, after warm_up()")


def _probe(settings: Settings, out: Collector) -> None:
    import numpy as np

    from clsviz.experiments import run_probe

    sizes = _texts(settings)
    runs = []
    for n in sizes:
        rng = np.random.default_rng(n)
        y = rng.integers(0, 3, n)
        centres = rng.normal(size=(3, 384)).astype(np.float32) * 0.3
        feats = {p: (centres[y] + rng.normal(size=(n, 384)).astype(np.float32))[:, None, :] for p in ("cls", "mean")}
        runs.append(repeat(lambda f=feats, y=y: run_probe(f, list(y), folds=5), settings.runs, _warmup(n, sizes)))
    out.grow("probe", sizes, runs, "run_probe on that many texts: 2 poolings x 1 layer x 5 folds of 384-dim "
                                   "vectors (3 Gaussian classes)")


def value_zeroing_function():
    """The library's value-zeroing call ``fn(encoder, trace, "value_zeroing")``, or None when this
    checkout's clsviz.mixing has none."""
    from clsviz import mixing

    for name in ("contributions", "measure"):
        fn = getattr(mixing, name, None)
        if callable(fn):
            return fn
    return None


def _value_zeroing(settings: Settings, out: Collector, enc) -> None:
    from clsviz import trace

    fn = value_zeroing_function()
    if fn is None:
        out.growth_missing("value_zeroing", "clsviz.mixing has no value-zeroing function in this checkout "
                                            "(contributions/measure); it arrives with the context-mixing work")
        return
    sizes = settings.pick([32, 128, 256], [16, 32, 64])
    runs = []
    for n in sizes:
        t = trace(enc, sentence_of(n, seed=3000 + n))
        runs.append(repeat(lambda t=t: fn(enc, t, "value_zeroing"), settings.runs, _warmup(n, sizes)))
    note = (f"clsviz.mixing.{fn.__name__}(encoder, trace, 'value_zeroing') on a sentence of that many tokens "
            "(its Trace made beforehand)")
    out.grow("value_zeroing", sizes, runs, note)
    predict_512(out.growth["value_zeroing"])


def predict_512(entry: dict) -> None:
    """Add to a growth ``entry`` measured below 512 tokens its time at 512, extrapolated with the
    exponent between its two largest sizes (the steepest part measured), and say so in its note."""
    k, largest = top_exponent(entry), entry["sizes"][-1]
    if k is None or largest >= 512:
        return
    at_512 = entry["seconds"][-1]["value"] * (512 / largest) ** k
    wait = f"{at_512:.0f} s" if at_512 < 120 else f"{at_512 / 60:.0f} min"
    entry["note"] = (f"{entry['note'].split('. Not run at 512')[0]}. Not run at 512 tokens: extrapolated with the "
                     f"exponent between the two largest sizes (k = {k:.2f}), one run there would take about {wait}")
    entry["predicted_512_s"] = at_512


def measure_growth(settings: Settings, out: Collector) -> None:
    """Every operation's growth curve; one that fails is recorded with its reason."""
    from clsviz import load_encoder

    enc = load_encoder()
    steps = {
        "trace": lambda: _trace(settings, out, enc),
        "attention_page": lambda: _attention_page(settings, out),
        "extract": lambda: _extract(settings, out, enc),
        "umap": lambda: _umap(settings, out),
        "probe": lambda: _probe(settings, out),
        "value_zeroing": lambda: _value_zeroing(settings, out, enc),
    }
    for op, step in steps.items():
        if not settings.wants(op, steps):
            continue
        try:
            step()
        except Exception as exc:  # one operation's failure must not hide the others
            out.growth_missing(op, f"failed: {type(exc).__name__}: {exc}")
        out.checkpoint()
