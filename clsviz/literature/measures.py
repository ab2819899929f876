"""How each published claim is measured on the current model: one small function per claim,
each returning a :class:`Measurement` (this model's numbers, in words and as named numbers for
the verdict rule, with the protocol and sample size), and a :class:`Context` holding what
several measurements share (the corpus sample, its traces and vectors), computed once.

The measurements that need an experiment from another page or a module other parts of clsviz
provide live in :mod:`clsviz.literature.external`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..attention import attention_breakdown, token_categories
from ..corpus import Corpus, demo_corpus, is_missing, stratified_rows
from ..encoder import DEFAULT_MODEL
from ..narrative import describe_series, layer_span
from ..progress import check_cancel
from .claims import NOT_MEASURABLE, Claim

__all__ = [
    "ATTENTION_SAMPLE",
    "BASELINE_SAMPLE",
    "MEASURED",
    "MAX_TOKENS",
    "SAMPLE_SIZE",
    "Context",
    "Measurement",
    "anisotropy_profile",
    "inversion_bound",
    "massive_ratio",
    "matching_blocks",
    "peak_depth",
    "probe_peaks",
    "sample_texts",
    "sep_share",
    "special_norm_share",
    "sts_gap",
]

SAMPLE_SIZE = 384
"""Texts probed and decoded (the demo corpus's 128 word-order rows are always among them, and at
least :data:`DEMO_REST` others)."""
ATTENTION_SAMPLE = 32
"""Corpus sentences traced with their attention maps."""
BASELINE_SAMPLE = 100
"""Sentences of the anisotropy baseline."""
MAX_TOKENS = 128
"""Sentences are cut to this many tokens (Clark et al. used segments of at most 128)."""
MEASURED = "measured"
DEMO_REST = 96
"""Demo rows probed besides the word-order pairs, at the least (each form × sentiment has some)."""

BUNDLED_NOTE = (
    "all-MiniLM-L6-v2 is not an off-the-shelf BERT: it was trained for sentence similarity with mean "
    "pooling (its [CLS] was never trained as a sentence vector, but that training shaped the space every "
    "token lives in), and it has 6 layers, not 12."
)


@dataclass(frozen=True)
class Measurement:
    """This model's side of one claim.

    ``status``: :data:`MEASURED`, or the verdict the row gets without a measurement ("not
    measurable on this model", "not measured yet", "not measurable here yet"). ``value``: the
    number(s) in words; ``numbers``: the named numbers the claim's checks read; ``protocol`` and
    ``sample``: how and on what; ``notes``: plain sentences added to the reason (or the reason
    itself when nothing was measured)."""

    status: str
    value: str = ""
    numbers: Mapping[str, float] = field(default_factory=dict)
    protocol: str = ""
    sample: str = ""
    notes: tuple[str, ...] = ()


def sample_texts(corpus: Corpus, n: int, seed: int = 0) -> list[str]:
    """``n`` texts of ``corpus`` (stratified by its first label column when it has one), in corpus order."""
    labels = corpus.labels[corpus.label_names[0]] if corpus.labels else [""] * len(corpus)
    return [corpus.texts[i] for i in stratified_rows(labels, n, seed=seed)]


def matching_blocks(first: int, last: int, of_layers: int, num_layers: int) -> list[int]:
    """The blocks (1..``num_layers``) at the relative depth of layers ``first``..``last`` of an
    ``of_layers``-layer model: ``b`` with ``first/of_layers <= b/num_layers <= last/of_layers``.
    Layers 6–10 of 12 are blocks 3–5 of 6 and block 1 of 2; none of 1."""
    low, high = Fraction(first, of_layers), Fraction(last, of_layers)
    return [b for b in range(1, num_layers + 1) if low <= Fraction(b, num_layers) <= high]


def peak_depth(accuracy: Sequence[float], tolerance: float = 0.02) -> tuple[int, float]:
    """(layer, relative depth) of the first layer whose accuracy is within ``tolerance`` of the
    best; ``accuracy`` has one value per hidden-state index 0..L."""
    acc = np.asarray(accuracy, dtype=np.float64)
    if len(acc) < 2:
        raise ValueError("A peak needs accuracies for at least two layers.")
    layer = int(np.flatnonzero(acc >= np.nanmax(acc) - tolerance)[0])
    return layer, layer / (len(acc) - 1)


class Context:
    """What the measurements share for one model: the corpus and pairs, the session's results,
    the sample sizes, and a memo so each trace or extraction runs once."""

    def __init__(self, encoder, corpus: Corpus | None, pairs, session: Mapping | None, *,
                 sample_size: int = SAMPLE_SIZE, attention_sample: int = ATTENTION_SAMPLE,
                 baseline_sample: int = BASELINE_SAMPLE, seed: int = 0, cancel=None):  # fmt: skip
        from ..corpus import demo_pairs

        self.encoder = encoder
        self.demo = corpus is None
        self.corpus = demo_corpus() if corpus is None else corpus
        self.pairs = demo_pairs() if pairs is None else pairs
        self.pairs_name = "demo pairs" if pairs is None else "your pairs"
        self.session = dict(session or {})
        self.sample_size, self.attention_sample = int(sample_size), int(attention_sample)
        self.baseline_sample, self.seed, self.cancel = int(baseline_sample), int(seed), cancel
        self._memo: dict = {}

    @property
    def num_layers(self) -> int:
        return self.encoder.info.num_layers

    @property
    def bundled(self) -> bool:
        return self.encoder.name == DEFAULT_MODEL

    def memo(self, key: str, compute: Callable[[], object]):
        if key not in self._memo:
            check_cancel(self.cancel, "Checking the published findings")
            self._memo[key] = compute()
        return self._memo[key]

    def attention_traces(self) -> list:
        """Traces (attention maps included) of a sample of the corpus, cut to :data:`MAX_TOKENS`."""
        from ..tracing import trace

        def compute():
            out = []
            for text in sample_texts(self.corpus, self.attention_sample, self.seed):
                check_cancel(self.cancel, "Checking the published findings")
                out.append(trace(self.encoder, text, max_length=MAX_TOKENS))
            return out

        return self.memo("traces", compute)

    def pair_vectors(self):
        """[CLS] and mean vectors of every sentence of the pairs (in :func:`pair_texts` order)."""
        from ..benchmark import pair_texts
        from ..vectors import extract

        return self.memo("pairs", lambda: extract(self.encoder, pair_texts(self.pairs), ("cls", "mean"),
                                                  max_length=MAX_TOKENS, cancel=self.cancel))

    def demo_vectors(self):
        """[CLS] vectors of a demo sample with its labels: every word-order row, and of the rest
        ``sample_size`` minus those (at least :data:`DEMO_REST`), stratified by form and sentiment."""
        from ..vectors import extract

        def compute():
            demo = demo_corpus()
            ordered = [i for i, v in enumerate(demo.labels["order"]) if not is_missing(v)]
            taken = set(ordered)
            rest = [i for i in range(len(demo)) if i not in taken]
            strata = [f"{demo.labels['form'][i]}|{demo.labels['sentiment'][i]}" for i in rest]
            extra = max(DEMO_REST, self.sample_size - len(ordered))
            picked = [rest[i] for i in stratified_rows(strata, extra, self.seed)]
            sub = demo.subset(sorted(ordered + picked))
            return extract(self.encoder, sub.texts, ("cls",), max_length=MAX_TOKENS, labels=sub.labels, cancel=self.cancel)

        return self.memo("demo", compute)

    def sample_vectors(self):
        """[CLS] vectors of the corpus sample (the demo sample when the corpus is the demo corpus)."""
        from ..vectors import extract

        if self.demo:
            return self.demo_vectors()
        return self.memo("sample", lambda: extract(self.encoder, sample_texts(self.corpus, self.sample_size, self.seed),
                                                   ("cls",), max_length=MAX_TOKENS, cancel=self.cancel))


def _not_measurable(why: str, protocol: str = "") -> Measurement:
    return Measurement(NOT_MEASURABLE, protocol=protocol, notes=(why,))


# --- the measurements -----------------------------------------------------------------------------


def sts_gap(claim: Claim, ctx: Context) -> Measurement:
    """Spearman ρ × 100 of [CLS] and of the mean on the scored pairs at the last layer, with intervals."""
    from ..benchmark import benchmark_from_vectors

    result = benchmark_from_vectors(ctx.pair_vectors(), ctx.pairs)
    numbers = {}
    for pooling in ("cls", "mean"):
        rho, low, high = result.interval(pooling, -1)
        numbers.update({pooling: 100 * rho, f"{pooling}_low": 100 * low, f"{pooling}_high": 100 * high})
    value = (f"ρ × 100 at layer {ctx.num_layers}: [CLS] {numbers['cls']:.1f} ({numbers['cls_low']:.1f}–"
             f"{numbers['cls_high']:.1f}), mean {numbers['mean']:.1f} ({numbers['mean_low']:.1f}–{numbers['mean_high']:.1f})")
    notes = (BUNDLED_NOTE + " On bert-base-uncased the published gap is expected.",) if ctx.bundled else ()
    return Measurement(MEASURED, value, numbers, f"last layer ({ctx.num_layers}), cosine vs score, Spearman, "
                       "1,000 bootstrap resamples of the pairs", f"{len(result.scores)} {ctx.pairs_name}", notes)


def sep_share(claim: Claim, ctx: Context) -> Measurement:
    """The share of attention on [SEP] (and on [CLS]) in the blocks matching the published layers."""
    p = claim.params
    blocks = matching_blocks(int(p["first_layer"]), int(p["last_layer"]), int(p["of_layers"]), ctx.num_layers)
    published = f"layers {p['first_layer']}–{p['last_layer']} of {p['of_layers']}"
    if not blocks:
        return _not_measurable(f"this model has {ctx.num_layers} block(s), none at the relative depth of {published}")
    shares = []
    for t in ctx.attention_traces():
        cats = token_categories(t.tokens, t.special_mask, t.cls_index)
        shares.append(attention_breakdown(t.attentions, cats).astype(np.float64))  # [L, C]
    mean = np.mean(shares, axis=0)
    rows = np.asarray(blocks) - 1
    sep, cls = float(mean[rows, 1].mean()), float(mean[rows, 0].mean())
    per_block = ", ".join(f"{mean[b - 1, 1]:.0%}" for b in blocks)
    value = f"[SEP] receives {sep:.0%} of the attention in {layer_span(blocks, 'block')} ({per_block}); [CLS] {cls:.0%}"
    notes = [f"{published.capitalize()} map by relative depth to {layer_span(blocks, 'block')} of this "
             f"{ctx.num_layers}-block model."]
    if cls > sep:
        notes.append(f"Here the parked attention goes to [CLS] instead ({cls:.0%} in those blocks).")
    return Measurement(MEASURED, value, {"sep_share": sep, "cls_share": cls},
                       f"mean over heads and query tokens, {layer_span(blocks, 'block')}, one [SEP] per input",
                       f"{len(shares)} corpus sentences", tuple(notes))


def special_norm_share(claim: Claim, ctx: Context) -> Measurement:
    """[CLS] + [SEP] share of attention by weight and by value norm, per block."""
    from ..mixing import attention_weights

    by_weight, by_norm = [], []
    try:
        for t in ctx.attention_traces():
            cats = token_categories(t.tokens, t.special_mask, t.cls_index)
            by_weight.append(attention_breakdown(t.attentions, cats)[:, :2].sum(axis=1))
            by_norm.append(attention_breakdown(attention_weights(ctx.encoder, t, "value_norm"), cats)[:, :2].sum(axis=1))
    except ValueError as exc:  # a family whose value and output weights clsviz cannot find
        return _not_measurable(str(exc))
    weight, norm = np.mean(by_weight, axis=0, dtype=np.float64), np.mean(by_norm, axis=0, dtype=np.float64)
    blocks = list(range(1, ctx.num_layers + 1))
    ratio = float(norm.mean() / weight.mean()) if weight.mean() > 0 else float("nan")
    value = (f"[CLS] + [SEP] get {weight.mean():.0%} of the attention by weight and {norm.mean():.0%} by value norm "
             f"(ratio {ratio:.2f}); by norm the share {describe_series(norm * 100, blocks, '.0f', 'block', '%')}")
    return Measurement(MEASURED, value, {"norm_to_weight": ratio, "weight_share": float(weight.mean()),
                                         "norm_share": float(norm.mean())},
                       "‖α f(x)‖ per head, rows normalised, mean over heads, queries and blocks",
                       f"{len(by_weight)} corpus sentences")


def anisotropy_profile(claim: Claim, ctx: Context) -> Measurement:
    """Mean cosine of random token pairs (and sentence pairs) from different sentences, per layer."""
    from ..baseline import measure_baseline

    if ctx.num_layers < 2:
        return _not_measurable("upper and lower layers need at least two blocks; this model has one")
    texts = None if ctx.demo else list(ctx.corpus.texts)
    base = ctx.memo("baseline", lambda: measure_baseline(ctx.encoder, texts, sample=ctx.baseline_sample,
                                                         max_length=MAX_TOKENS, seed=ctx.seed))
    wide = base.wide("raw")
    tokens = wide["token"].to_numpy(dtype=np.float64)[1:]  # layers 1..L
    layers = list(range(1, ctx.num_layers + 1))
    half = ctx.num_layers // 2
    numbers = {"lowest": float(tokens.min()), "lower": float(tokens[:half].mean()), "upper": float(tokens[-half:].mean())}
    value = f"random token pairs: the mean cosine {describe_series(tokens, layers)}"
    if "mean" in wide:
        value += f"; random sentence pairs (mean pooling): {describe_series(wide['mean'].to_numpy()[1:], layers)}"
    return Measurement(MEASURED, value, numbers, f"layers 1–{ctx.num_layers}; lower half {layer_span(layers[:half])}, "
                       f"upper half {layer_span(layers[-half:])}",
                       f"{base.num_tokens:,} tokens of {len(base.texts)} sentences ({base.source})")


def massive_ratio(claim: Claim, ctx: Context) -> Measurement:
    """The largest [CLS]/[SEP] activation in multiples of its layer's median magnitude."""
    import pandas as pd

    from ..norms import top_dimensions

    top = pd.concat([top_dimensions(t, k=1) for t in ctx.attention_traces()], ignore_index=True)
    best = top.loc[top["times_median"].idxmax()]
    per_layer = top.groupby("layer")["times_median"].max().to_numpy()
    value = (f"{best['times_median']:,.0f}× the median: dimension {int(best['dimension'])} of [{best['role'].upper()}] "
             f"at layer {int(best['layer'])} (value {best['value']:.1f}); the largest ratio per layer "
             f"{describe_series(per_layer, list(range(len(per_layer))), '.0f', 'layer', '×')}")
    return Measurement(MEASURED, value, {"ratio": float(best["times_median"]), "value": float(abs(best["value"]))},
                       "|value| / median |value| of the layer, on [CLS] and [SEP], layers 0–"
                       f"{ctx.num_layers}", f"{len(ctx.attention_traces())} corpus sentences")


def probe_peaks(claim: Claim, ctx: Context) -> Measurement:
    """The relative depth at which a [CLS] probe peaks for a surface, a syntax and a semantics label."""
    from ..experiments.probe import run_probe

    p = claim.params
    vectors = ctx.demo_vectors()
    numbers, parts, sizes = {}, [], []
    for kind in ("surface", "syntax", "semantics"):
        label = str(p[kind])
        check_cancel(ctx.cancel, "Checking the published findings")
        result = run_probe(vectors, label, poolings=[str(p["pooling"])], seed=ctx.seed, n_jobs=1, cancel=ctx.cancel)
        acc = result.table.sort_values("layer")["accuracy_mean"].to_numpy()
        layer, depth = peak_depth(acc, float(p["tolerance"]))
        numbers[kind] = depth
        parts.append(f"{label} ({kind}) peaks at layer {layer} of {ctx.num_layers} ({acc[layer]:.0%}; majority "
                     f"{result.majority:.0%})")
        sizes.append(f"{result.n} ({label})")
    return Measurement(MEASURED, "; ".join(parts), numbers,
                       f"5-fold logistic-regression probe on {p['pooling']}, layers 0–{ctx.num_layers}; "
                       f"peak = first layer within {100 * float(p['tolerance']):.0f} points of the best",
                       "demo texts: " + ", ".join(sizes))


def inversion_bound(claim: Claim, ctx: Context) -> Measurement:
    """Lower bounds on what [CLS] keeps of its sentence: bag-of-words F1 and paraphrase recall@1."""
    from ..experiments.inversion import bow_f1
    from ..experiments.neighbours import pair_set, paraphrase_recall

    parts, sizes, numbers = [], [], {}
    vectors = ctx.sample_vectors()
    try:
        bow, vocab = bow_f1(vectors, poolings=("cls",), seed=ctx.seed)
    except ValueError as exc:
        parts.append(f"no bag-of-words decoder ({exc})")
    else:
        best = bow.loc[bow["f1"].idxmax()]
        numbers.update(bow_f1=float(best["f1"]), bow_baseline=float(best["baseline_f1"]))
        parts.append(f"a linear bag-of-words decoder names held-out words with F1 {best['f1']:.2f} at layer "
                     f"{int(best['layer'])} (guessing frequent words: {best['baseline_f1']:.2f})")
        sizes.append(f"{len(vectors.texts)} texts, {len(vocab)} words")
    try:
        found = pair_set(ctx.pairs)
        recall = paraphrase_recall(ctx.pair_vectors(), found.pairs, poolings=("cls",))
    except ValueError as exc:
        parts.append(f"no paraphrase search ({exc})")
    else:
        best = recall.loc[recall["recall_at_1"].idxmax()]
        numbers["recall_at_1"] = float(best["recall_at_1"])
        parts.append(f"the nearest other sentence is the paraphrase partner for {best['recall_at_1']:.0%} of "
                     f"{int(best['queries'])} queries at layer {int(best['layer'])} (chance {best['chance']:.1%})")
        sizes.append(f"{int(best['candidates']) + 1} pair sentences")
    notes = ("Exact recovery at vec2text's level needs an inverter trained for this embedder at its scale; these "
             "one-step readers give lower bounds on what [CLS] keeps, by a different protocol. The inversion ladder "
             "of 'Recover the sentence?' trains a small inverter per layer (minutes on a CPU): the closer protocol.",)
    return Measurement(NOT_MEASURABLE, "lower bounds: " + "; ".join(parts), numbers,
                       "best layer of [CLS]; held-out F1 and recall@1", "; ".join(sizes), notes)
