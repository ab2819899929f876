"""How each published claim is measured on the current model: one small function per claim,
each returning a :class:`Measurement` (this model's numbers, in words and as named numbers for
the verdict rule, with the protocol and sample size), and a :class:`Context` holding what
several measurements share (the corpus sample, its traces and vectors), computed once.

Every deciding number is an :class:`clsviz.verdicts.Estimate`: the value with its 95% bootstrap
interval over the unit its noise comes from (sentences, pairs). The samples are fixed (the demo
corpus, or the corpus given, drawn with ``seed``) and stated in each row: nothing depends on
what else was computed before. The layer profile of probes lives in :mod:`.probing`; the
measurements that need an experiment from another module live in :mod:`clsviz.literature.external`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..attention import attention_breakdown, token_categories
from ..baseline import baseline_texts
from ..benchmark import benchmark_from_vectors, pair_texts
from ..corpus import Corpus, demo_corpus, demo_pairs, is_missing, stratified_rows
from ..experiments.inversion import bow_f1
from ..experiments.neighbours import pair_set, paraphrase_recall
from ..layers import block_row
from ..metrics import bootstrap_interval
from ..mixing import attention_weights
from ..narrative import describe_series, layer_span
from ..norms import top_dimensions
from ..progress import check_cancel
from ..tracing import trace
from ..vectors import extract, hidden_batches, tokenize_texts
from ..verdicts import Estimate, estimate
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



@dataclass(frozen=True)
class Measurement:
    """This model's side of one claim.

    ``status``: :data:`MEASURED`, or the verdict the row gets without a measurement ("not
    measurable on this model", "not measured yet"). ``value``: the number(s) in words;
    ``numbers``: the named numbers the claim's checks read, each an
    :class:`~clsviz.verdicts.Estimate` (value and 95% interval); ``protocol`` and ``sample``: how
    and on what; ``notes``: plain sentences added to the reason (or the reason itself when
    nothing was measured)."""

    status: str
    value: str = ""
    numbers: Mapping[str, Estimate] = field(default_factory=dict)
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


class Context:
    """What the measurements share for one model: the corpus and pairs, the fine-tuned copy
    given (``finetuned``: a folder or an Encoder, or ``session["finetuned"]``), the sample sizes,
    and a memo so each trace or extraction runs once."""

    def __init__(self, encoder, corpus: Corpus | None, pairs, session: Mapping | None = None, *,
                 sample_size: int = SAMPLE_SIZE, attention_sample: int = ATTENTION_SAMPLE,
                 baseline_sample: int = BASELINE_SAMPLE, seed: int = 0, cancel=None, finetuned=None,
                 scoreboard_sample: int | None = None):  # fmt: skip
        self.encoder = encoder
        self.demo = corpus is None
        self.corpus = demo_corpus() if corpus is None else corpus
        self.pairs = demo_pairs() if pairs is None else pairs
        self.pairs_name = "demo pairs" if pairs is None else "your pairs"
        self.session = dict(session or {})
        self.finetuned = finetuned if finetuned is not None else self.session.get("finetuned")
        self.scoreboard_sample = scoreboard_sample
        self.sample_size, self.attention_sample = int(sample_size), int(attention_sample)
        self.baseline_sample, self.seed, self.cancel = int(baseline_sample), int(seed), cancel
        self._memo: dict = {}

    @property
    def num_layers(self) -> int:
        return self.encoder.info.num_layers

    def memo(self, key: str, compute: Callable[[], object]):
        if key not in self._memo:
            check_cancel(self.cancel, "Checking the published findings")
            self._memo[key] = compute()
        return self._memo[key]

    def attention_traces(self) -> list:
        """Traces (attention maps included) of a sample of the corpus, cut to :data:`MAX_TOKENS`."""
        def compute():
            out = []
            for text in sample_texts(self.corpus, self.attention_sample, self.seed):
                check_cancel(self.cancel, "Checking the published findings")
                out.append(trace(self.encoder, text, max_tokens=MAX_TOKENS))
            return out

        return self.memo("traces", compute)

    def pair_vectors(self):
        """[CLS] and mean vectors of every sentence of the pairs (in :func:`pair_texts` order)."""
        return self.memo("pairs", lambda: extract(self.encoder, pair_texts(self.pairs), ("cls", "mean"),
                                                  max_tokens=MAX_TOKENS, cancel=self.cancel))

    def demo_vectors(self):
        """[CLS] vectors of a demo sample with its labels: every word-order row, and of the rest
        ``sample_size`` minus those (at least :data:`DEMO_REST`), stratified by form and sentiment."""
        def compute():
            demo = demo_corpus()
            ordered = [i for i, v in enumerate(demo.labels["order"]) if not is_missing(v)]
            taken = set(ordered)
            rest = [i for i in range(len(demo)) if i not in taken]
            strata = [f"{demo.labels['form'][i]}|{demo.labels['sentiment'][i]}" for i in rest]
            extra = max(DEMO_REST, self.sample_size - len(ordered))
            picked = [rest[i] for i in stratified_rows(strata, extra, self.seed)]
            sub = demo.subset(sorted(ordered + picked))
            return extract(self.encoder, sub.texts, ("cls",), max_tokens=MAX_TOKENS, labels=sub.labels, cancel=self.cancel)

        return self.memo("demo", compute)

    def sample_vectors(self):
        """[CLS] vectors of the corpus sample (the demo sample when the corpus is the demo corpus)."""
        if self.demo:
            return self.demo_vectors()
        return self.memo("sample", lambda: extract(self.encoder, sample_texts(self.corpus, self.sample_size, self.seed),
                                                   ("cls",), max_tokens=MAX_TOKENS, cancel=self.cancel))


def _not_measurable(why: str, protocol: str = "") -> Measurement:
    return Measurement(NOT_MEASURABLE, protocol=protocol, notes=(why,))


# --- the measurements -----------------------------------------------------------------------------


def sts_gap(claim: Claim, ctx: Context) -> Measurement:
    """Spearman ρ × 100 of [CLS] and of the mean on the scored pairs at the last layer; the
    deciding number is the gap (mean − [CLS]) with its paired bootstrap interval over the pairs."""
    from scipy.stats import spearmanr

    result = benchmark_from_vectors(ctx.pair_vectors(), ctx.pairs)
    numbers = {}
    for pooling in ("cls", "mean"):
        rho, low, high = result.interval(pooling, -1)
        numbers[pooling] = Estimate(100 * rho, 100 * low, 100 * high, len(result.scores), "pairs")
    k_cls, k_mean = result.poolings.index("cls"), result.poolings.index("mean")
    cos = result.cosines[:, -1]
    scores = np.asarray(result.scores, dtype=np.float64)

    def gap(c, m, y):
        return 100 * (spearmanr(m, y).statistic - spearmanr(c, y).statistic)

    value, low, high = bootstrap_interval(gap, cos[:, k_cls], cos[:, k_mean], scores, seed=ctx.seed)
    numbers["gap"] = Estimate(value, low, high, len(scores), "pairs")
    value = (f"ρ × 100 at layer {ctx.num_layers}: [CLS] {numbers['cls'].text('.1f')}, mean "
             f"{numbers['mean'].text('.1f')}; mean − [CLS] {numbers['gap'].text('.1f')}")
    return Measurement(MEASURED, value, numbers, f"last layer ({ctx.num_layers}), cosine vs score, Spearman, "
                       "1,000 bootstrap resamples of the pairs (the gap resampled paired)",
                       f"{len(scores)} {ctx.pairs_name}")


def sep_share(claim: Claim, ctx: Context) -> Measurement:
    """The share of attention on [SEP] (and on [CLS]) in the blocks matching the published
    layers, with its bootstrap interval over the sentences."""
    p = claim.params
    blocks = matching_blocks(int(p["first_layer"]), int(p["last_layer"]), int(p["of_layers"]), ctx.num_layers)
    published = f"layers {p['first_layer']}–{p['last_layer']} of {p['of_layers']}"
    if not blocks:
        return _not_measurable(f"this model has {ctx.num_layers} block(s), none at the relative depth of {published}")
    shares = []
    for t in ctx.attention_traces():
        cats = token_categories(t.tokens, t.special_mask, t.cls_index)
        shares.append(attention_breakdown(t.attentions, cats).astype(np.float64))  # [L, C]
    shares = np.stack(shares)
    rows = np.asarray(blocks) - 1
    sep = estimate(shares[:, rows, 1].mean(axis=1), seed=ctx.seed)
    cls = estimate(shares[:, rows, 0].mean(axis=1), seed=ctx.seed)
    mean = shares.mean(axis=0)
    per_block = ", ".join(f"{mean[block_row(b), 1]:.0%}" for b in blocks)
    value = (f"[SEP] receives {sep.text('.0%')} of the attention in {layer_span(blocks, 'block')} ({per_block}); "
             f"[CLS] {cls.text('.0%')}")
    notes = [f"{published.capitalize()} map by relative depth to {layer_span(blocks, 'block')} of this "
             f"{ctx.num_layers}-block model."]
    if cls.value > sep.value:
        notes.append(f"Here the parked attention goes to [CLS] instead ({cls.value:.0%} in those blocks).")
    return Measurement(MEASURED, value, {"sep_share": sep, "cls_share": cls},
                       f"mean over heads and query tokens, {layer_span(blocks, 'block')}, one [SEP] per input",
                       f"{len(shares)} corpus sentences", tuple(notes))


def special_norm_share(claim: Claim, ctx: Context) -> Measurement:
    """[CLS] + [SEP] share of attention by weight and by value norm; the deciding number is the
    ratio of the two (means over blocks and sentences) with its bootstrap interval over sentences."""
    by_weight, by_norm = [], []
    try:
        for t in ctx.attention_traces():
            cats = token_categories(t.tokens, t.special_mask, t.cls_index)
            by_weight.append(attention_breakdown(t.attentions, cats)[:, :2].sum(axis=1))
            by_norm.append(attention_breakdown(attention_weights(ctx.encoder, t, "value_norm"), cats)[:, :2].sum(axis=1))
    except ValueError as exc:  # a family whose value and output weights clsviz cannot find
        return _not_measurable(str(exc))
    weight, norm = np.asarray(by_weight, dtype=np.float64), np.asarray(by_norm, dtype=np.float64)  # [N, L]
    per_text = np.column_stack([norm.mean(axis=1), weight.mean(axis=1)])

    def ratio(rows):
        return rows[:, 0].mean() / rows[:, 1].mean() if rows[:, 1].mean() > 0 else float("nan")

    found = estimate(per_text, ratio, seed=ctx.seed)
    blocks = list(range(1, ctx.num_layers + 1))
    norm_blocks = norm.mean(axis=0)
    value = (f"[CLS] + [SEP] get {weight.mean():.0%} of the attention by weight and {norm.mean():.0%} by value norm "
             f"(ratio {found.text('.2f')}); by norm the share "
             f"{describe_series(norm_blocks * 100, blocks, '.0f', 'block', '%')}")
    return Measurement(MEASURED, value, {"norm_to_weight": found},
                       "‖α f(x)‖ per head, rows normalised, mean over heads, queries and blocks",
                       f"{len(by_weight)} corpus sentences")


def _token_sums(encoder, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(float64 [N, L+1, D] per text: the sum of its content tokens' unit vectors at each layer,
    int [N] content tokens per text): enough for every cross-sentence mean cosine."""
    import torch  # the model runs here; importing clsviz.literature stays light

    tok = tokenize_texts(encoder, texts, MAX_TOKENS)
    info = encoder.info
    sums = np.zeros((len(texts), info.num_layers + 1, info.hidden_size))
    counts = np.zeros(len(texts), dtype=np.int64)
    with torch.inference_mode():
        for rows, hidden, _, mask, special in hidden_batches(encoder, tok.input_ids, tok.special_masks, 32):
            h = hidden.double()
            unit = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            content = (mask & ~special)[:, None, :, None].to(unit.dtype)
            sums[rows] = (unit * content).sum(dim=2).cpu().numpy()
            counts[rows] = (mask & ~special).sum(dim=1).cpu().numpy()
    return sums, counts


def _cross_cosine(weights: np.ndarray, grams: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """float64 [L+1]: the mean cosine of token pairs from different sentences when sentence i is
    taken ``weights[i]`` times (a bootstrap resample); ``grams`` [L+1, N, N] of the unit sums."""
    w = weights.astype(np.float64)
    same = np.einsum("i,lii->l", w * w, grams)
    total = np.einsum("i,lij,j->l", w, grams, w) - same
    pairs = (w @ counts) ** 2 - (w * w) @ (counts * counts)
    return total / max(pairs, 1.0)


def anisotropy_profile(claim: Claim, ctx: Context) -> Measurement:
    """Mean cosine of token pairs from different sentences, per layer (the anisotropy baseline's
    "token" reference on the same sentences), with bootstrap intervals over the sentences for
    the lowest layer average and for the upper half minus the lower half."""
    if ctx.num_layers < 2:
        return _not_measurable("upper and lower layers need at least two blocks; this model has one")
    if ctx.demo:
        texts, source = baseline_texts(ctx.baseline_sample, ctx.seed)
    else:
        texts, source = tuple(sample_texts(ctx.corpus, ctx.baseline_sample, ctx.seed)), "your corpus"
    sums, counts = ctx.memo("token_sums", lambda: _token_sums(ctx.encoder, list(texts)))
    grams = np.einsum("nld,mld->lnm", sums, sums)
    half = ctx.num_layers // 2
    layers = list(range(1, ctx.num_layers + 1))

    def profile(w):
        per_layer = _cross_cosine(w, grams, counts)[1:]
        return per_layer.min(), per_layer[-half:].mean() - per_layer[:half].mean(), per_layer

    n = len(texts)
    lowest, step, tokens = profile(np.ones(n))
    draws = np.random.default_rng(ctx.seed).multinomial(n, np.full(n, 1.0 / n), size=1000)
    boot = np.array([profile(w)[:2] for w in draws])
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    numbers = {"lowest": Estimate(float(lowest), float(low[0]), float(high[0]), n),
               "upper_minus_lower": Estimate(float(step), float(low[1]), float(high[1]), n)}  # fmt: skip
    value = (f"random token pairs from different sentences: the mean cosine {describe_series(tokens, layers)}; "
             f"lowest layer {numbers['lowest'].text('.2f')}; {layer_span(layers[-half:])} minus "
             f"{layer_span(layers[:half])} {numbers['upper_minus_lower'].text('.3f')}")
    return Measurement(MEASURED, value, numbers, f"layers 1–{ctx.num_layers}; every pair of content tokens from two "
                       "different sentences; 1,000 bootstrap resamples of the sentences",
                       f"{int(counts.sum()):,} tokens of {n} sentences ({source})")


def massive_ratio(claim: Claim, ctx: Context) -> Measurement:
    """The largest [CLS]/[SEP] activation in multiples of its layer's median magnitude: per
    sentence its largest ratio over layers; the deciding number is the median over sentences,
    with its bootstrap interval."""
    import pandas as pd

    per_text = [top_dimensions(t, k=1) for t in ctx.attention_traces()]
    largest = np.array([float(top["times_median"].max()) for top in per_text])
    found = estimate(largest, np.median, seed=ctx.seed)
    top = pd.concat(per_text, ignore_index=True)
    best = top.loc[top["times_median"].idxmax()]
    per_layer = top.groupby("layer")["times_median"].max().to_numpy()
    value = (f"a sentence's largest activation is {found.text(',.0f', '×')} the median (median over sentences); "
             f"the largest of all {best['times_median']:,.0f}×, dimension {int(best['dimension'])} of "
             f"[{best['role'].upper()}] at layer {int(best['layer'])} (value {best['value']:.1f}); the largest per layer "
             f"{describe_series(per_layer, list(range(len(per_layer))), '.0f', 'layer', '×')}")
    return Measurement(MEASURED, value, {"ratio": found},
                       "|value| / median |value| of the layer, on [CLS] and [SEP], layers 0–"
                       f"{ctx.num_layers}; the median over sentences of each sentence's largest",
                       f"{len(per_text)} corpus sentences")


def inversion_bound(claim: Claim, ctx: Context) -> Measurement:
    """Lower bounds on what [CLS] keeps of its sentence: bag-of-words F1 and paraphrase recall@1."""
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
