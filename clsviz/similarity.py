"""Similarity: is the [CLS] vector an aggregate of the sentence?

Every number the Similarity page shows comes from a function here:

* :func:`cls_token_cosines` and :func:`cls_summary`: how close [CLS] is to each token and to
  the sentence's averages, layer by layer;
* :func:`measure_baseline` (:class:`Baseline`) and :func:`anisotropy_baseline`: what the same
  cosines are between *unrelated* tokens and sentences, because contextual vectors share a few
  dominant directions and a raw cosine of 0.6 may mean nothing at all;
* :func:`compare_sentences`: cosine between typed sentences per layer and pooling;
* :func:`sentence_benchmark` and :func:`spearman`: rank correlation between cosine and
  human similarity scores on sentence pairs;
* :func:`token_norms` and :func:`top_dimensions`: vector norms and the few huge hidden
  dimensions ("massive activations") on [CLS] and [SEP].

Three views of a cosine (:data:`VIEWS`):

* ``"raw"``: the plain cosine;
* ``"minus baseline"``: the cosine minus the mean cosine of unrelated pairs of the same kind;
* ``"centred"``: the cosine after each vector is centred on the corpus mean of its own kind
  ([CLS] vectors on the mean [CLS], tokens on the mean content token, pooled sentence
  vectors on the mean of that pooling), which removes the directions every input shares.

From a notebook::

    from clsviz import load_encoder, trace, figures
    from clsviz.similarity import measure_baseline, cls_summary, compare_sentences

    enc = load_encoder()
    base = measure_baseline(enc)  # seconds; reuse it for every sentence
    t = trace(enc, "The film was not bad at all.")
    cls_summary(t, "minus baseline", base)  # DataFrame, one row per layer
    figures.cls_summary_figure(cls_summary(t), base)  # plotly Figure
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .corpus import PooledVectors, extract
from .encoder import Encoder, apply_pooler
from .pooling import check_strategy, pool, pool_hidden
from .tracing import Trace

__all__ = [
    "BUILTIN_SENTENCES",
    "COMPARE_STRATEGIES",
    "REFERENCES",
    "REFERENCE_HELP",
    "VIEWS",
    "VIEW_HELP",
    "Baseline",
    "BenchmarkResult",
    "anisotropy_baseline",
    "baseline_texts",
    "benchmark_from_vectors",
    "cls_summary",
    "cls_token_cosines",
    "compare_sentences",
    "cosine",
    "cosine_matrix",
    "describe_summary",
    "dimension_values",
    "layer_names",
    "massive_dimensions",
    "measure_baseline",
    "pair_texts",
    "sentence_benchmark",
    "spearman",
    "token_norms",
    "token_table",
    "top_dimensions",
]

VIEWS = ("raw", "minus baseline", "centred")
"""How a cosine is shown: as is, minus the unrelated-pairs baseline, or between centred vectors."""

VIEW_HELP = {
    "raw": "the plain cosine similarity",
    "minus baseline": "the cosine minus the mean cosine of unrelated pairs of the same kind "
    "(0 = no more similar than unrelated text)",
    "centred": "the cosine after each vector is centred on the corpus mean of its kind, "
    "removing the directions that every input shares",
}

COMPARE_STRATEGIES = ("cls", "mean", "max")
"""Poolings compared between sentences and in the benchmark."""

REFERENCES = ("token", "cls_token", "cls_mean_content", "cls_mean", "cls_pooler", "cls", "mean", "max")
"""Kinds of unrelated pair the baseline measures (each pair comes from two different texts)."""

REFERENCE_HELP = {
    "token": "two content tokens of different sentences",
    "cls_token": "one sentence's [CLS] and a content token of another sentence",
    "cls_mean_content": "one sentence's [CLS] and the mean content token of another sentence",
    "cls_mean": "one sentence's [CLS] and the mean of all tokens of another sentence",
    "cls_pooler": "one sentence's [CLS] and the pooler output of another sentence",
    "cls": "the [CLS] vectors of two different sentences",
    "mean": "the mean-pooled vectors of two different sentences",
    "max": "the max-pooled vectors of two different sentences",
}

# Sentence vectors the baseline keeps (and centres on); "pooler" is added when the model has one.
_BASELINE_POOLINGS = ("cls", "mean", "mean_content", "max")

BUILTIN_SENTENCES = (
    "The train to Lisbon leaves at seven in the morning.",
    "She planted tomatoes and basil along the garden fence.",
    "Interest rates rose for the third month in a row.",
    "My grandmother still writes letters by hand.",
    "The goalkeeper saved a penalty in the final minute.",
    "Photosynthesis turns light into chemical energy.",
    "Please remember to lock the back door tonight.",
    "The museum reopened after a two-year renovation.",
    "He could not find his keys anywhere.",
    "Volcanic ash grounded hundreds of flights across Europe.",
    "A good espresso needs finely ground beans.",
    "The committee postponed its decision until spring.",
    "Why do cats knock things off tables?",
    "The software update fixed the battery drain.",
    "Our neighbours adopted a greyhound last week.",
    "The novel follows three sisters over forty years.",
    "Heavy rain flooded the underground car park.",
    "Can you send me the report before noon?",
    "The orchestra played Brahms without a conductor.",
    "Glaciers in the Alps are shrinking every summer.",
    "I think the restaurant was overrated.",
    "The startup raised twelve million dollars in funding.",
    "Children learn languages faster than adults.",
    "The bridge was closed for safety inspections.",
    "That was the worst film I have seen all year.",
    "Honeybees communicate by dancing.",
    "The senator denied every accusation.",
    "Add the eggs one at a time and keep stirring.",
    "The telescope captured a galaxy billions of years old.",
    "Nobody expected the shop to close so suddenly.",
    "The marathon route passes the old harbour.",
    "Vaccines train the immune system to recognise a virus.",
    "The printer on the second floor is jammed again.",
    "They watched the sunset from the lighthouse.",
    "Prices at the market have doubled since January.",
    "The chess champion resigned after forty moves.",
    "Wear a helmet when you ride a bicycle.",
    "The river freezes solid in the coldest winters.",
    "I loved the soundtrack but hated the ending.",
    "The library lends tools as well as books.",
    "An earthquake shook the coastal town overnight.",
    "The recipe calls for two cups of flour.",
)
"""A fixed, varied set of unrelated sentences: the baseline sample when no demo corpus ships."""


# --- cosine helpers ---------------------------------------------------------------------------


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity along the last axis, broadcasting the others (0 for a zero vector)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    dots = (a * b).sum(axis=-1)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 [N, M]: cosine between every row of ``a`` [N, D] and every row of ``b`` [M, D]."""
    return _unit(a) @ _unit(b).T


def _centre(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``x - mean`` in float64; a residual below 1e-5 of the vector's own norm counts as zero.

    Some vectors (e.g. [CLS] at the embedding layer) are the same for every text; centred,
    they must give cosine 0, not the cosine of leftover rounding noise.
    """
    x = np.asarray(x, dtype=np.float64)
    out = x - np.asarray(mean, dtype=np.float64)
    tiny = np.linalg.norm(out, axis=-1, keepdims=True) <= 1e-5 * np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(tiny, 0.0, out)


def layer_names(num_layers: int) -> list[str]:
    """Axis labels for ``num_layers + 1`` hidden-state rows: ``"0 (embeddings)"``, ``"1"``, ..."""
    return ["0 (embeddings)", *[str(i) for i in range(1, num_layers + 1)]]


def _check_view(view: str, baseline: Baseline | None) -> str:
    if view not in VIEWS:
        raise ValueError(f"Unknown view {view!r}. Valid: {', '.join(VIEWS)}.")
    if view != "raw" and baseline is None:
        raise ValueError(f"The {view!r} view needs a baseline: pass baseline=measure_baseline(encoder).")
    return view


def _check_same_model(baseline: Baseline | None, num_layers: int, hidden_size: int, name: str) -> None:
    if baseline is None:
        return
    if baseline.token_mean.shape != (num_layers + 1, hidden_size):
        raise ValueError(
            f"The baseline was measured on '{baseline.model_name}' ({baseline.num_layers} layers, "
            f"{baseline.hidden_size} dims), not on '{name}' ({num_layers} layers, {hidden_size} dims). "
            "Measure a baseline for this model."
        )


# --- the anisotropy baseline -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Baseline:
    """How similar *unrelated* tokens and sentences look to one model, layer by layer.

    * ``table``: DataFrame, one row per (layer, reference, view) with columns ``layer``,
      ``reference`` (one of :data:`REFERENCES`), ``view`` (``"raw"`` or ``"centred"``),
      ``mean`` and ``std`` of the cosine over all unrelated pairs, and ``pairs`` (how many)
    * ``token_mean``: float32 [L + 1, D], the mean content-token vector of each layer
    * ``pooled_mean``: float32 [L + 1, S, D], the mean sentence vector per pooling in
      ``poolings`` (``cls`` is the mean [CLS] vector)
    * ``texts``: the sample of texts it was measured on; ``num_tokens``: content tokens used
    * ``source``: where the texts came from (``"demo corpus"``, ``"built-in sentences"``, ...)

    Treat as read-only: the app shares one per model between sessions.
    """

    table: pd.DataFrame
    token_mean: np.ndarray
    pooled_mean: np.ndarray
    poolings: tuple[str, ...]
    texts: tuple[str, ...]
    num_tokens: int
    model_name: str
    source: str

    @property
    def num_layers(self) -> int:
        return self.token_mean.shape[0] - 1

    @property
    def hidden_size(self) -> int:
        return self.token_mean.shape[1]

    @property
    def references(self) -> tuple[str, ...]:
        """The references this baseline has (``cls_pooler`` only for models with a pooler)."""
        present = set(self.table["reference"])
        return tuple(r for r in REFERENCES if r in present)

    def reference(self, kind: str, view: str = "raw") -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each float64 [L + 1]: the unrelated-pair cosine of ``kind`` in ``view``.

        In the ``"minus baseline"`` view the reference is 0 by construction; its spread is
        the raw spread.
        """
        if view not in VIEWS:
            raise ValueError(f"Unknown view {view!r}. Valid: {', '.join(VIEWS)}.")
        if kind not in self.references:
            raise KeyError(f"No {kind!r} reference in this baseline; available: {', '.join(self.references)}")
        stored = "centred" if view == "centred" else "raw"
        rows = self.table[(self.table["reference"] == kind) & (self.table["view"] == stored)].sort_values("layer")
        mean = rows["mean"].to_numpy(dtype=np.float64)
        std = rows["std"].to_numpy(dtype=np.float64)
        if view == "minus baseline":
            mean = np.zeros_like(mean)
        return mean, std

    def mean_vector(self, pooling: str) -> np.ndarray:
        """float32 [L + 1, D]: the mean sentence vector of ``pooling`` over the sample."""
        if pooling not in self.poolings:
            raise KeyError(f"No mean for {pooling!r}; available: {', '.join(self.poolings)}")
        return self.pooled_mean[:, self.poolings.index(pooling)]

    def wide(self, view: str = "raw") -> pd.DataFrame:
        """One row per layer, one column per reference: the mean unrelated-pair cosine."""
        stored = "centred" if view == "centred" else "raw"
        sub = self.table[self.table["view"] == stored]
        out = sub.pivot(index="layer", columns="reference", values="mean")
        return out[list(self.references)].reset_index().rename_axis(columns=None)


def baseline_texts(sample: int = 200, seed: int = 0) -> tuple[tuple[str, ...], str]:
    """(texts, source): up to ``sample`` texts of the demo corpus, or the built-in sentences.

    The sample is drawn with a fixed seed, so a model's baseline is reproducible.
    """
    texts: Sequence[str] = BUILTIN_SENTENCES
    source = "built-in sentences"
    try:
        from .corpus import demo_corpus
    except ImportError:
        demo_corpus = None
    if demo_corpus is not None:
        try:
            corpus = demo_corpus()
            if len(corpus.texts) >= 2:
                texts, source = corpus.texts, "demo corpus"
        except Exception:
            # A broken data file must not take the baseline down; the built-in set still works.
            texts, source = BUILTIN_SENTENCES, "built-in sentences"
    return _sample_texts(texts, sample, seed), source


def _sample_texts(texts: Sequence[str], sample: int, seed: int) -> tuple[str, ...]:
    texts = tuple(texts)
    if len(texts) <= sample:
        return texts
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(texts), size=sample, replace=False))
    return tuple(texts[i] for i in keep)


def _sample_states(encoder: Encoder, texts: Sequence[str], batch_size: int, max_length: int):
    """Run texts through the fast model once.

    Returns (tokens float32 [M, L+1, D], token_owner int [M], pooled float32 [N, L+1, S, D],
    poolings) where the M rows are every content token of every text.
    """
    import torch

    info = encoder.info
    poolings = _BASELINE_POOLINGS + (("pooler",) if info.has_pooler else ())
    limit = min(int(max_length), info.max_length)
    tok = encoder.tokenizer
    token_rows, owners, pooled_rows = [], [], []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            with encoder.lock:
                enc = tok(
                    chunk,
                    padding=True,
                    truncation=True,
                    max_length=limit,
                    split_special_tokens=True,
                    return_special_tokens_mask=True,
                    return_tensors="pt",
                    verbose=False,
                )
            ids = enc["input_ids"].to(encoder.device)
            mask = enc["attention_mask"].to(encoder.device).bool()
            special = enc["special_tokens_mask"].to(encoder.device).bool() & mask
            out = encoder.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
            hidden = torch.stack(out.hidden_states, dim=1).float()  # [B, L+1, T, D]
            cls_index = ((ids == info.cls_token_id) & special).int().argmax(dim=1)
            pooler_states = None
            if info.has_pooler:
                b, nl, _, d = hidden.shape
                cls_vecs = hidden[torch.arange(b, device=hidden.device), :, cls_index, :]
                pooler_states = apply_pooler(encoder.model, cls_vecs.reshape(b * nl, d)).reshape(b, nl, d)
            stacked = torch.stack(
                [pool_hidden(hidden, mask, special, s, cls_index, pooler_states) for s in poolings], dim=2
            )
            pooled_rows.append(stacked.float().cpu().numpy())
            content = (mask & ~special).cpu().numpy()
            hid = hidden.cpu().numpy()
            for j in range(len(chunk)):
                vecs = hid[j][:, content[j], :].transpose(1, 0, 2)  # [T_j, L+1, D]
                token_rows.append(vecs)
                owners.append(np.full(len(vecs), start + j))
    return (
        np.concatenate(token_rows).astype(np.float32),
        np.concatenate(owners),
        np.concatenate(pooled_rows).astype(np.float32),
        poolings,
    )


def _cross_stats(a: np.ndarray, a_owner: np.ndarray, b: np.ndarray, b_owner: np.ndarray):
    """Mean and std of cosine(a_i, b_j) over all pairs whose owners differ; and the pair count."""
    sims = cosine_matrix(a, b)
    keep = a_owner[:, None] != b_owner[None, :]
    values = sims[keep]
    if values.size == 0:
        return float("nan"), float("nan"), 0
    return float(values.mean()), float(values.std()), int(values.size)


def measure_baseline(
    encoder: Encoder,
    texts: Sequence[str] | None = None,
    sample: int = 200,
    max_tokens: int = 3000,
    batch_size: int = 32,
    max_length: int = 128,
    seed: int = 0,
) -> Baseline:
    """Measure the anisotropy baseline of ``encoder``.

    ``texts`` defaults to a sample of the demo corpus (or :data:`BUILTIN_SENTENCES`); at
    most ``sample`` texts and ``max_tokens`` content tokens (a seeded random subset) are
    used, so it takes seconds. Every pair counted comes from two *different* texts.
    """
    if texts is None:
        chosen, source = baseline_texts(sample, seed)
    else:
        chosen, source = _sample_texts([str(t) for t in texts if str(t).strip()], sample, seed), "given texts"
    if len(chosen) < 2:
        raise ValueError("The baseline needs at least two non-empty texts (pairs come from different texts).")
    # Similar lengths in a batch waste less padding; the order does not change the statistics.
    chosen = tuple(sorted(chosen, key=len))
    tokens, owner, pooled, poolings = _sample_states(encoder, chosen, batch_size, max_length)
    if len(tokens) > max_tokens:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(tokens), size=max_tokens, replace=False))
        tokens, owner = tokens[keep], owner[keep]

    n_texts = len(chosen)
    text_ids = np.arange(n_texts)
    # Means in float64, stored as float32: a vector identical in every text (e.g. [CLS] at the
    # embedding layer) then centres to exactly zero instead of to rounding noise.
    token_mean = tokens.astype(np.float64).mean(axis=0).astype(np.float32)  # [L+1, D]
    pooled_mean = pooled.astype(np.float64).mean(axis=0).astype(np.float32)  # [L+1, S, D]
    tokens = tokens.astype(np.float64)
    pooled = pooled.astype(np.float64)
    idx = {p: poolings.index(p) for p in poolings}
    rows = []
    for layer in range(tokens.shape[1]):
        for view in ("raw", "centred"):
            tok = _centre(tokens[:, layer], token_mean[layer]) if view == "centred" else tokens[:, layer]

            def sent(p, layer=layer, view=view):
                v = pooled[:, layer, idx[p]]
                return _centre(v, pooled_mean[layer, idx[p]]) if view == "centred" else v

            cls = sent("cls")
            pairs = {
                "token": (tok, owner, tok, owner),
                "cls_token": (cls, text_ids, tok, owner),
                "cls_mean_content": (cls, text_ids, sent("mean_content"), text_ids),
                "cls_mean": (cls, text_ids, sent("mean"), text_ids),
                "cls": (cls, text_ids, cls, text_ids),
                "mean": (sent("mean"), text_ids, sent("mean"), text_ids),
                "max": (sent("max"), text_ids, sent("max"), text_ids),
            }
            if "pooler" in idx:
                pairs["cls_pooler"] = (cls, text_ids, sent("pooler"), text_ids)
            for kind in REFERENCES:
                if kind in pairs:
                    mean, std, count = _cross_stats(*pairs[kind])
                    rows.append(dict(layer=layer, reference=kind, view=view, mean=mean, std=std, pairs=count))
    return Baseline(
        table=pd.DataFrame(rows),
        token_mean=token_mean,
        pooled_mean=pooled_mean,
        poolings=poolings,
        texts=tuple(chosen),
        num_tokens=int(len(tokens)),
        model_name=encoder.name,
        source=source,
    )


def anisotropy_baseline(encoder: Encoder, texts: Sequence[str] | None = None, **kwargs) -> pd.DataFrame:
    """One row per layer, one column per reference kind: mean cosine of unrelated pairs.

    A notebook shortcut for ``measure_baseline(encoder, texts, **kwargs).wide("raw")``; values
    lie in [-1, 1] and a high value in upper layers is the anisotropy Ethayarajh (2019) reported.
    """
    return measure_baseline(encoder, texts, **kwargs).wide("raw")


def token_table(trace: Trace, values: np.ndarray, name: str = "value") -> pd.DataFrame:
    """Long table of a [L + 1, T] per-layer, per-token array: ``layer``, ``position``, ``token``,
    ``special`` and ``name`` (e.g. the output of :func:`cls_token_cosines` or :func:`token_norms`)."""
    values = np.asarray(values)
    expected = (trace.num_layers + 1, trace.seq_len)
    if values.shape != expected:
        raise ValueError(f"values: expected {list(expected)}, got {list(values.shape)}")
    layers, positions = np.meshgrid(np.arange(expected[0]), np.arange(expected[1]), indexing="ij")
    return pd.DataFrame(
        {
            "layer": layers.ravel(),
            "position": positions.ravel(),
            "token": [trace.tokens[p] for p in positions.ravel()],
            "special": trace.special_mask[positions.ravel()],
            name: values.ravel(),
        }
    )


# --- [CLS] against its own tokens ------------------------------------------------------------


def cls_token_cosines(trace: Trace, view: str = "raw", baseline: Baseline | None = None) -> np.ndarray:
    """float64 [L + 1, T]: cosine between [CLS] and every token, per layer (row 0 = embeddings).

    ``view="minus baseline"`` subtracts the mean cosine between a [CLS] and the tokens of
    unrelated sentences; ``view="centred"`` centres [CLS] on the mean [CLS] and every other
    token on the mean content token before the cosine.
    """
    _check_view(view, baseline)
    _check_same_model(baseline, trace.num_layers, trace.hidden_size, trace.model_name)
    hidden = trace.hidden_states.astype(np.float64)
    cls = hidden[:, trace.cls_index, :]
    if view == "centred":
        hidden = _centre(hidden, baseline.token_mean[:, None, :])
        cls = _centre(cls, baseline.mean_vector("cls"))
        hidden[:, trace.cls_index, :] = cls
    sims = cosine(hidden, cls[:, None, :])
    if view == "minus baseline":
        sims = sims - baseline.reference("cls_token")[0][:, None]
    return sims


def cls_summary(trace: Trace, view: str = "raw", baseline: Baseline | None = None) -> pd.DataFrame:
    """Per layer: cosine of [CLS] with the sentence's averages and with the pooler output.

    Columns: ``layer``, ``cls_vs_mean_content`` (mean of the text's own tokens),
    ``cls_vs_mean_all`` (mean of every token, specials included), ``cls_vs_pooler`` (the
    pooler head on the same [CLS]; NaN without a pooler), ``cls_norm``. In the
    ``"minus baseline"`` view each cosine has the matching unrelated-pair reference
    (``cls_mean_content``, ``cls_mean``, ``cls_pooler``) subtracted; in ``"centred"`` each
    vector is centred on the corpus mean of its kind first.
    """
    _check_view(view, baseline)
    _check_same_model(baseline, trace.num_layers, trace.hidden_size, trace.model_name)
    n = trace.num_layers + 1
    cls = np.stack([pool(trace, "cls", layer) for layer in range(n)]).astype(np.float64)
    mean_content = np.stack([pool(trace, "mean_content", layer) for layer in range(n)]).astype(np.float64)
    mean_all = np.stack([pool(trace, "mean", layer) for layer in range(n)]).astype(np.float64)
    pooler = None if trace.pooler_states is None else trace.pooler_states.astype(np.float64)
    norms = np.linalg.norm(cls, axis=-1)
    if view == "centred":
        cls = _centre(cls, baseline.mean_vector("cls"))
        mean_content = _centre(mean_content, baseline.mean_vector("mean_content"))
        mean_all = _centre(mean_all, baseline.mean_vector("mean"))
        if pooler is not None and "pooler" in baseline.poolings:
            pooler = _centre(pooler, baseline.mean_vector("pooler"))
    out = {
        "layer": np.arange(n),
        "cls_vs_mean_content": cosine(cls, mean_content),
        "cls_vs_mean_all": cosine(cls, mean_all),
        "cls_vs_pooler": cosine(cls, pooler) if pooler is not None else np.full(n, np.nan),
    }
    if view == "minus baseline":
        for column, kind in (
            ("cls_vs_mean_content", "cls_mean_content"),
            ("cls_vs_mean_all", "cls_mean"),
            ("cls_vs_pooler", "cls_pooler"),
        ):
            if kind in baseline.references:
                out[column] = out[column] - baseline.reference(kind)[0]
            else:
                out[column] = np.full(n, np.nan)
    out["cls_norm"] = norms
    return pd.DataFrame(out)


def describe_summary(summary: pd.DataFrame, baseline: Baseline | None = None, view: str = "raw") -> str:
    """One sentence reading the last layer of :func:`cls_summary` against the baseline."""
    last = summary.iloc[-1]
    layer = int(last["layer"])
    value = float(last["cls_vs_mean_content"])
    label = "cosine" if view == "raw" else f"cosine ({view})"
    text = f"Layer {layer}: {label} of [CLS] with the mean of its own tokens is {value:.2f}"
    if baseline is None or "cls_mean_content" not in baseline.references:
        return text + "."
    mean, std = baseline.reference("cls_mean_content", view)
    text += f"; with an unrelated sentence's tokens it is {mean[layer]:.2f} ± {std[layer]:.2f}"
    if std[layer] > 0:
        z = (value - mean[layer]) / std[layer]
        text += f", so this [CLS] sits {abs(z):.1f} standard deviations {'above' if z >= 0 else 'below'} chance"
    return text + "."


# --- comparing typed sentences ---------------------------------------------------------------


def compare_sentences(
    traces: Sequence[Trace],
    strategies: Sequence[str] = COMPARE_STRATEGIES,
    view: str = "raw",
    baseline: Baseline | None = None,
) -> pd.DataFrame:
    """Cosine between every pair of sentences, per layer and pooling.

    Returns one row per (pair, layer, strategy) with columns ``a``, ``b`` (1-based sentence
    numbers), ``sentence_a``, ``sentence_b``, ``layer``, ``strategy``, ``cosine`` (in
    ``view``), and, with a baseline, ``reference`` / ``reference_std`` (unrelated sentences'
    cosine for the same pooling, in the same view). Raises ``ValueError`` with fewer than two.
    """
    if len(traces) < 2:
        raise ValueError(
            f"Comparing sentences needs at least two; got {len(traces)}. Type another sentence on a new line."
        )
    _check_view(view, baseline)
    first = traces[0]
    _check_same_model(baseline, first.num_layers, first.hidden_size, first.model_name)
    strategies = tuple(check_strategy(s) for s in strategies)
    n = first.num_layers + 1
    # vectors[s][i]: [L+1, D] for sentence i
    vectors = {
        s: [np.stack([pool(t, s, layer) for layer in range(n)]).astype(np.float64) for t in traces]
        for s in strategies
    }
    rows = []
    for s in strategies:
        refs = baseline.reference(s, view) if baseline is not None and s in baseline.references else None
        if view == "centred":
            vecs = [_centre(v, baseline.mean_vector(s)) for v in vectors[s]]
        else:
            vecs = vectors[s]
        for i in range(len(traces)):
            for j in range(i + 1, len(traces)):
                sims = cosine(vecs[i], vecs[j])
                if view == "minus baseline":
                    sims = sims - baseline.reference(s)[0]
                for layer in range(n):
                    row = dict(
                        a=i + 1,
                        b=j + 1,
                        sentence_a=traces[i].text,
                        sentence_b=traces[j].text,
                        layer=layer,
                        strategy=s,
                        cosine=float(sims[layer]),
                    )
                    if baseline is not None:
                        row["reference"] = float(refs[0][layer]) if refs is not None else float("nan")
                        row["reference_std"] = float(refs[1][layer]) if refs is not None else float("nan")
                    rows.append(row)
    return pd.DataFrame(rows)


# --- the sentence-similarity benchmark -------------------------------------------------------


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    starts = ends - counts
    return ((starts + 1 + ends) / 2.0)[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either side is constant."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2 or np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    rx = _average_ranks(x) - (x.size + 1) / 2.0
    ry = _average_ranks(y) - (y.size + 1) / 2.0
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    if denom == 0:
        return float("nan")
    return float((rx * ry).sum() / denom)


@dataclass(frozen=True, eq=False)
class BenchmarkResult:
    """Cosine against human scores on sentence pairs.

    * ``table``: one row per (layer, strategy): ``spearman`` (raw cosine vs score),
      ``spearman_centred`` (vectors centred on the mean over the pairs' sentences first),
      ``pairs``
    * ``cosines``: float64 [P, L + 1, S] raw cosine of each pair; ``scores``: float64 [P]
    * ``pairs``: the input pairs (sentence1, sentence2, score, ...)
    """

    table: pd.DataFrame
    cosines: np.ndarray
    scores: np.ndarray
    strategies: tuple[str, ...]
    pairs: pd.DataFrame
    model_name: str

    def pair_table(self, layer: int = -1) -> pd.DataFrame:
        """Each pair with its score and one ``cos_<strategy>`` column per pooling at ``layer``."""
        out = self.pairs.copy()
        for k, s in enumerate(self.strategies):
            out[f"cos_{s}"] = self.cosines[:, layer, k]
        return out


def _check_pairs(pairs: pd.DataFrame) -> None:
    missing = [c for c in ("sentence1", "sentence2", "score") if c not in pairs.columns]
    if missing:
        raise ValueError(
            f"The pairs table lacks column(s) {', '.join(missing)}; it needs sentence1, sentence2, score."
        )
    if len(pairs) < 3:
        raise ValueError(f"A rank correlation needs at least 3 pairs; got {len(pairs)}.")


def pair_texts(pairs: pd.DataFrame) -> tuple[str, ...]:
    """Each distinct sentence of ``pairs`` (columns ``sentence1``, ``sentence2``) once, in order."""
    return tuple(dict.fromkeys([*pairs["sentence1"].astype(str), *pairs["sentence2"].astype(str)]))


def benchmark_from_vectors(vectors: PooledVectors, pairs: pd.DataFrame) -> BenchmarkResult:
    """Spearman correlation between cosine and ``score`` per layer × pooling, from vectors
    already extracted for (at least) every sentence of ``pairs`` (see :func:`pair_texts`)."""
    _check_pairs(pairs)
    where = {t: i for i, t in enumerate(vectors.texts)}
    left = pairs["sentence1"].astype(str).tolist()
    right = pairs["sentence2"].astype(str).tolist()
    absent = [t for t in dict.fromkeys(left + right) if t not in where]
    if absent:
        raise ValueError(f"{len(absent)} sentence(s) of the pairs have no vectors, e.g. {absent[0]!r}.")
    needed = sorted({where[t] for t in left + right})
    vec = vectors.vectors[needed].astype(np.float64)  # [U, L+1, S, D]
    local = {old: new for new, old in enumerate(needed)}
    li = np.array([local[where[t]] for t in left])
    ri = np.array([local[where[t]] for t in right])
    raw = cosine(vec[li], vec[ri])  # [P, L+1, S]
    # Centre on the mean over the pairs' own sentences: the corpus-mean correction.
    centred_vec = _centre(vec, vec.mean(axis=0, keepdims=True))
    centred = cosine(centred_vec[li], centred_vec[ri])
    scores = pd.to_numeric(pairs["score"], errors="raise").to_numpy(dtype=np.float64)
    rows = []
    for layer in range(vec.shape[1]):
        for k, s in enumerate(vectors.strategies):
            rows.append(
                dict(
                    layer=layer,
                    strategy=s,
                    spearman=spearman(raw[:, layer, k], scores),
                    spearman_centred=spearman(centred[:, layer, k], scores),
                    pairs=len(scores),
                )
            )
    return BenchmarkResult(
        table=pd.DataFrame(rows),
        cosines=raw,
        scores=scores,
        strategies=tuple(vectors.strategies),
        pairs=pairs.reset_index(drop=True),
        model_name=vectors.model_name,
    )


def sentence_benchmark(
    encoder: Encoder,
    pairs: pd.DataFrame,
    strategies: Sequence[str] = COMPARE_STRATEGIES,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    max_length: int | None = None,
) -> BenchmarkResult:
    """Spearman correlation between cosine and ``score`` on sentence pairs, per layer × pooling.

    ``pairs`` needs columns ``sentence1``, ``sentence2``, ``score`` (e.g.
    :func:`clsviz.corpus.demo_pairs` or :func:`clsviz.corpus.load_pairs`). Each distinct
    sentence is encoded once with :func:`clsviz.extract`. The live version of Sentence-BERT's
    Table 1, where BERT's [CLS] scored far below mean pooling.
    """
    _check_pairs(pairs)
    strategies = tuple(check_strategy(s) for s in strategies)
    vectors = extract(
        encoder, pair_texts(pairs), strategies, batch_size=batch_size, progress=progress, max_length=max_length
    )
    return benchmark_from_vectors(vectors, pairs)


# --- norms and massive activations -----------------------------------------------------------


def token_norms(trace: Trace) -> np.ndarray:
    """float64 [L + 1, T]: the L2 norm of every token's hidden vector at every layer."""
    return np.linalg.norm(trace.hidden_states.astype(np.float64), axis=-1)


def top_dimensions(trace: Trace, k: int = 5, layers: Sequence[int] | None = None) -> pd.DataFrame:
    """The ``k`` hidden dimensions of largest magnitude on [CLS] and on [SEP], per layer.

    One row per (layer, role, rank): ``layer``, ``role`` (``"cls"``/``"sep"``), ``token``,
    ``position``, ``rank`` (1 = largest), ``dimension``, ``value``, and ``times_median``:
    |value| divided by the median |value| over every token and dimension of that layer —
    Sun et al. (2024) call activations thousands of times the median "massive".
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(int(k), trace.hidden_size)
    n = trace.num_layers + 1
    layers = range(n) if layers is None else [layer + n if layer < 0 else layer for layer in layers]
    roles = [("cls", trace.cls_index)]
    if trace.sep_index is not None:
        roles.append(("sep", trace.sep_index))
    rows = []
    for layer in layers:
        if not 0 <= layer < n:
            raise IndexError(f"layer {layer} is outside 0..{n - 1}")
        hidden = trace.hidden_states[layer].astype(np.float64)
        median = float(np.median(np.abs(hidden)))
        for role, position in roles:
            vec = hidden[position]
            order = np.argsort(-np.abs(vec), kind="stable")[:k]
            for rank, dim in enumerate(order, start=1):
                rows.append(
                    dict(
                        layer=layer,
                        role=role,
                        token=trace.tokens[position],
                        position=position,
                        rank=rank,
                        dimension=int(dim),
                        value=float(vec[dim]),
                        times_median=float(abs(vec[dim]) / median) if median > 0 else float("inf"),
                    )
                )
    return pd.DataFrame(rows)


def dimension_values(trace: Trace, dimension: int) -> np.ndarray:
    """float32 [L + 1, T]: one hidden dimension at every token and layer (follow a massive one)."""
    if not 0 <= int(dimension) < trace.hidden_size:
        raise IndexError(f"dimension {dimension} is outside 0..{trace.hidden_size - 1}")
    return trace.hidden_states[:, :, int(dimension)]


def massive_dimensions(top: pd.DataFrame) -> list[int]:
    """The dimensions of a :func:`top_dimensions` table, largest (× median) first."""
    order = top.groupby("dimension")["times_median"].max().sort_values(ascending=False, kind="stable")
    return [int(d) for d in order.index]
