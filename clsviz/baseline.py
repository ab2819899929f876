"""The anisotropy baseline: how similar *unrelated* tokens and sentences look to one model.

Contextual vectors share a few dominant directions, so a raw cosine of 0.6 may mean nothing at
all (Ethayarajh 2019). :func:`measure_baseline` runs a fixed sample of unrelated texts once and
records, per layer, the mean and spread of the cosine between tokens and sentence vectors of
*different* texts - the level any cosine on the Similarity page must clear. Its
:class:`Baseline` also keeps the mean vector of each kind, for the centred view.

From a notebook::

    from clsviz import load_encoder
    from clsviz.baseline import measure_baseline

    base = measure_baseline(load_encoder())   # seconds; reuse it for every sentence
    base.wide("raw")                          # one row per layer, one column per reference
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .corpus import demo_corpus
from .encoder import Encoder, apply_pooler
from .keywords import accepts_max_length
from .metrics import centre, cosine_matrix
from .pooling import pool_hidden
from .vectors import hidden_batches, tokenize_texts

__all__ = [
    "BUILTIN_SENTENCES",
    "REFERENCES",
    "REFERENCE_HELP",
    "VIEWS",
    "VIEW_HELP",
    "Baseline",
    "anisotropy_baseline",
    "baseline_texts",
    "check_baseline",
    "check_view",
    "measure_baseline",
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



def check_view(view: str, baseline: Baseline | None) -> str:
    """``view`` if it is one of :data:`VIEWS` and has the baseline it needs, else ValueError."""
    if view not in VIEWS:
        raise ValueError(f"Unknown view {view!r}. Valid: {', '.join(VIEWS)}.")
    if view != "raw" and baseline is None:
        raise ValueError(f"The {view!r} view needs a baseline: pass baseline=measure_baseline(encoder).")
    return view


def check_baseline(baseline: Baseline | None, num_layers: int, hidden_size: int, name: str) -> None:
    """ValueError when ``baseline`` was measured on a model of another shape than ``name``."""
    if baseline is None:
        return
    if baseline.token_mean.shape != (num_layers + 1, hidden_size):
        raise ValueError(
            f"The baseline was measured on '{baseline.model_name}' ({baseline.num_layers} layers, "
            f"{baseline.hidden_size} dims), not on '{name}' ({num_layers} layers, {hidden_size} dims). "
            "Measure a baseline for this model."
        )


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


def _sample_states(encoder: Encoder, texts: Sequence[str], batch_size: int, max_tokens: int):
    """Run texts through the fast model once.

    Returns (tokens float32 [M, L+1, D], token_owner int [M], pooled float32 [N, L+1, P, D],
    poolings) where the M rows are every content token of every text.
    """
    import torch

    info = encoder.info
    poolings = _BASELINE_POOLINGS + (("pooler",) if info.has_pooler else ())
    if info.summary == "none":  # a lab model without a summary token: no [CLS] to measure
        poolings = tuple(p for p in poolings if p not in ("cls", "pooler"))
    tokenized = tokenize_texts(encoder, texts, max_tokens)
    token_rows, owners = [], []
    pooled = np.empty((len(texts), info.num_layers + 1, len(poolings), info.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for rows, hidden, ids, mask, special in hidden_batches(
            encoder, tokenized.input_ids, tokenized.special_masks, batch_size
        ):
            hidden = hidden.float()
            cls_index = ((ids == info.cls_token_id) & special).int().argmax(dim=1)
            pooler_states = None
            if "pooler" in poolings:
                b, nl, _, d = hidden.shape
                cls_vecs = hidden[torch.arange(b, device=hidden.device), :, cls_index, :]
                pooler_states = apply_pooler(encoder.model, cls_vecs.reshape(b * nl, d)).reshape(b, nl, d)
            stacked = torch.stack([pool_hidden(hidden, mask, special, p, cls_index, pooler_states) for p in poolings], 2)
            pooled[rows] = stacked.cpu().numpy()
            content = (mask & ~special).cpu().numpy()
            hid = hidden.cpu().numpy()
            for j, row in enumerate(rows):
                vecs = hid[j][:, content[j], :].transpose(1, 0, 2)  # [T_j, L+1, D]
                token_rows.append(vecs)
                owners.append(np.full(len(vecs), row))
    return np.concatenate(token_rows).astype(np.float32), np.concatenate(owners), pooled, poolings


def _cross_stats(a: np.ndarray, a_owner: np.ndarray, b: np.ndarray, b_owner: np.ndarray):
    """Mean and std of cosine(a_i, b_j) over all pairs whose owners differ; and the pair count."""
    sims = cosine_matrix(a, b)
    keep = a_owner[:, None] != b_owner[None, :]
    values = sims[keep]
    if values.size == 0:
        return float("nan"), float("nan"), 0
    return float(values.mean()), float(values.std()), int(values.size)


@accepts_max_length
def measure_baseline(
    encoder: Encoder,
    texts: Sequence[str] | None = None,
    sample: int = 200,
    token_sample: int = 3000,
    batch_size: int = 32,
    max_tokens: int = 128,
    seed: int = 0,
) -> Baseline:
    """Measure the anisotropy baseline of ``encoder``.

    ``texts`` defaults to a sample of the demo corpus (or :data:`BUILTIN_SENTENCES`); at
    most ``sample`` texts and ``token_sample`` content tokens (a seeded random subset) are
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
    tokens, owner, pooled, poolings = _sample_states(encoder, chosen, batch_size, max_tokens)
    if len(tokens) > token_sample:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(tokens), size=token_sample, replace=False))
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
            tok = centre(tokens[:, layer], token_mean[layer]) if view == "centred" else tokens[:, layer]

            def sent(p, layer=layer, view=view):
                v = pooled[:, layer, idx[p]]
                return centre(v, pooled_mean[layer, idx[p]]) if view == "centred" else v

            pairs = {
                "token": (tok, owner, tok, owner),
                "mean": (sent("mean"), text_ids, sent("mean"), text_ids),
                "max": (sent("max"), text_ids, sent("max"), text_ids),
            }
            if "cls" in idx:
                cls = sent("cls")
                pairs.update(
                    cls_token=(cls, text_ids, tok, owner),
                    cls_mean_content=(cls, text_ids, sent("mean_content"), text_ids),
                    cls_mean=(cls, text_ids, sent("mean"), text_ids),
                    cls=(cls, text_ids, cls, text_ids),
                )
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


