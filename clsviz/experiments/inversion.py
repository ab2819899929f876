"""Can the sentence be recovered from its [CLS] vector? Two decoders (the third reading,
nearest neighbours, is :mod:`clsviz.experiments.neighbours`).

* **Bag-of-words decoding**: a linear multi-label decoder (ridge regression onto a binary
  bag of the corpus's frequent content words) trained per layer on corpus vectors; F1 on
  held-out sentences, and the words it reads from one sentence's vector.
* **MLM-head reading**: where the checkpoint has a trained masked-language-model head, the
  tokens that head reads from the [CLS] vector at every layer.

These are lower bounds: a linear decoder that fails does not prove the information is gone
(published inversion models recover far more with non-linear, iterative decoders), and a
neighbour search only finds what the corpus contains.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..encoder import Encoder
from ..vectors import PooledVectors

__all__ = [
    "content_words",
    "bow_vocabulary",
    "bow_matrix",
    "BagOfWordsDecoder",
    "bow_f1",
    "fit_bow_decoder",
    "DecodedWords",
    "decode_words",
    "MLMHead",
    "load_mlm_head",
    "mlm_reading",
    "summarize_mlm_reading",
    "summarize_recall",
    "summarize_bow",
]


# --- bag of words ------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def content_words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (letters only), English stop words and 1-letter words removed."""
    stop = _stop_words()
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in stop]


def bow_vocabulary(texts: Sequence[str], size: int = 200, min_docs: int = 2) -> tuple[str, ...]:
    """The ``size`` content words found in the most texts (at least ``min_docs``); ties alphabetical."""
    df = Counter(w for t in texts for w in set(content_words(t)))
    ranked = sorted((w for w, c in df.items() if c >= min_docs), key=lambda w: (-df[w], w))
    return tuple(ranked[: int(size)])


def bow_matrix(texts: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """float32 [N, V]: 1 where text n contains vocabulary word v."""
    col = {w: j for j, w in enumerate(vocabulary)}
    out = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in set(content_words(t)):
            j = col.get(w)
            if j is not None:
                out[i, j] = 1.0
    return out


class BagOfWordsDecoder:
    """Linear multi-label decoder: standardized vectors -> ridge regression -> one score per word.

    Parameters
    ----------
    alpha : float
        Ridge penalty (on standardized inputs).

    ``fit(X, Y)`` with X [N, D] vectors and Y [N, V] binary word indicators; ``scores(X)``
    returns [N, V]. A score is the decoder's estimate that the word is present (not a
    calibrated probability); ``threshold_`` (set by :func:`bow_f1`) turns scores into sets.
    """

    def __init__(self, alpha: float = 10.0):
        self.alpha = alpha

    def fit(self, X: np.ndarray, Y: np.ndarray) -> BagOfWordsDecoder:
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"X must be [N, D] and Y [N, V] with the same N; got {list(X.shape)} and {list(Y.shape)}")
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0)
        self.scale_[self.scale_ < 1e-8] = 1.0
        Z = (X - self.mean_) / self.scale_
        self.intercept_ = Y.mean(axis=0)
        gram = Z.T @ Z + self.alpha * np.eye(Z.shape[1])
        self.coef_ = np.linalg.solve(gram, Z.T @ (Y - self.intercept_))  # [D, V]
        self.threshold_ = 0.5
        return self

    def scores(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return Z @ self.coef_ + self.intercept_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """bool [N, V]: words whose score reaches ``threshold_``."""
        return self.scores(X) >= self.threshold_


def _micro_prf(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp = float((pred & truth).sum())
    p = tp / max(float(pred.sum()), 1.0)
    r = tp / max(float(truth.sum()), 1.0)
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


_THRESHOLDS = np.round(np.arange(0.05, 0.80, 0.025), 3)


def _best_threshold(scores: np.ndarray, truth: np.ndarray) -> float:
    f1s = [_micro_prf(scores >= t, truth)[2] for t in _THRESHOLDS]
    return float(_THRESHOLDS[int(np.argmax(f1s))])


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a fit / validation / test split (test_fraction held out, 20% of the rest validates)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    n_val = max(1, int(round((n - n_test) * 0.2)))
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]


def bow_f1(
    pooled: PooledVectors,
    poolings: Sequence[str] = ("cls", "mean"),
    vocab_size: int = 200,
    alpha: float = 10.0,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Held-out micro F1 of the bag-of-words decoder per pooling and layer.

    Split: ``test_fraction`` of the texts is held out; of the rest 80% fits the decoder and
    20% chooses its threshold. The baseline ignores the vector and scores every word by its
    training frequency (same threshold search): the F1 that knowing nothing gets.
    Returns (table, vocabulary). Columns: pooling, layer, f1, precision, recall, threshold,
    baseline_f1, n_fit, n_test, vocab_size.
    """
    texts = list(pooled.texts)
    if len(set(texts)) < 2:
        raise ValueError("All the sentences are identical, so there is nothing to decode. Use a varied corpus.")
    if len(texts) < 20:
        raise ValueError(f"Only {len(texts)} sentences; the decoder needs at least 20 (fit, validation and test).")
    vocab = bow_vocabulary(texts, vocab_size)
    if len(vocab) < 2:
        raise ValueError(
            "Fewer than two content words appear in two or more sentences, so there is no vocabulary to decode."
        )
    Y = bow_matrix(texts, vocab).astype(bool)
    fit, val, test = _split(len(texts), test_fraction, seed)
    freq = Y[fit].mean(axis=0)
    base_t = _best_threshold(np.broadcast_to(freq, Y[val].shape), Y[val])
    _, _, base_f1 = _micro_prf(np.broadcast_to(freq, Y[test].shape) >= base_t, Y[test])
    rows = []
    for s in poolings:
        for layer in range(pooled.num_layers + 1):
            X = pooled.get(s, layer)
            dec = BagOfWordsDecoder(alpha).fit(X[fit], Y[fit])
            dec.threshold_ = _best_threshold(dec.scores(X[val]), Y[val])
            p, r, f = _micro_prf(dec.predict(X[test]), Y[test])
            rows.append(
                {
                    "pooling": s,
                    "layer": layer,
                    "f1": f,
                    "precision": p,
                    "recall": r,
                    "threshold": dec.threshold_,
                    "baseline_f1": base_f1,
                    "n_fit": len(fit),
                    "n_test": len(test),
                    "vocab_size": len(vocab),
                }
            )
    return pd.DataFrame(rows), vocab


def fit_bow_decoder(
    X: np.ndarray, texts: Sequence[str], vocab_size: int = 200, alpha: float = 10.0, seed: int = 0
) -> tuple[BagOfWordsDecoder, tuple[str, ...]]:
    """(decoder, vocabulary): a bag-of-words decoder fitted on 80% of (X [N, D], texts), its
    threshold chosen on the other 20%, then refitted on all of them with that threshold.
    Raises ValueError when the texts share fewer than two content words."""
    vocab = bow_vocabulary(texts, vocab_size)
    if len(vocab) < 2:
        raise ValueError("Fewer than two content words appear in two or more texts, so there is no vocabulary to decode.")
    X = np.asarray(X)
    Y = bow_matrix(texts, vocab)
    order = np.random.default_rng(seed).permutation(len(texts))
    n_val = max(1, int(round(len(texts) * 0.2)))
    fit, val = order[n_val:], order[:n_val]
    threshold = _best_threshold(BagOfWordsDecoder(alpha).fit(X[fit], Y[fit]).scores(X[val]), Y[val].astype(bool))
    decoder = BagOfWordsDecoder(alpha).fit(X, Y)
    decoder.threshold_ = threshold
    return decoder, vocab


@dataclass(frozen=True, eq=False)
class DecodedWords:
    """The decoder's top-k words for one sentence.

    ``table`` columns: rank, word, score, in_sentence. ``precision_at_k`` = hits / k;
    ``recall_at_k`` = hits / the sentence's words that are in the vocabulary (NaN if none).
    ``outside_vocabulary``: the sentence's content words the decoder cannot name at all.
    """

    table: pd.DataFrame
    precision_at_k: float
    recall_at_k: float
    in_vocabulary: tuple[str, ...]
    outside_vocabulary: tuple[str, ...]


def decode_words(
    vector: np.ndarray,
    text: str,
    train_vectors: np.ndarray,
    train_texts: Sequence[str],
    vocab_size: int = 200,
    k: int = 10,
    alpha: float = 10.0,
) -> DecodedWords:
    """Train the decoder on (train_vectors [N, D], train_texts) and read the top-k words of
    ``vector`` [D]. Rows whose text equals ``text`` are left out of training."""
    keep = [i for i, t in enumerate(train_texts) if t != text]
    texts = [train_texts[i] for i in keep]
    if len(set(texts)) < 2:
        raise ValueError("The corpus needs at least two different sentences (other than this one) to train on.")
    vocab = bow_vocabulary(texts, vocab_size)
    if len(vocab) < 2:
        raise ValueError("Fewer than two content words appear in two or more corpus sentences.")
    dec = BagOfWordsDecoder(alpha).fit(np.asarray(train_vectors)[keep], bow_matrix(texts, vocab))
    scores = dec.scores(np.asarray(vector)[None, :])[0]
    k = int(min(max(k, 1), len(vocab)))
    top = np.argsort(-scores, kind="stable")[:k]
    words = set(content_words(text))
    in_vocab = tuple(sorted(w for w in words if w in set(vocab)))
    outside = tuple(sorted(words - set(in_vocab)))
    hits = [vocab[j] in words for j in top]
    table = pd.DataFrame(
        {"rank": np.arange(1, k + 1), "word": [vocab[j] for j in top], "score": scores[top], "in_sentence": hits}
    )
    return DecodedWords(
        table=table,
        precision_at_k=float(np.mean(hits)),
        recall_at_k=float(sum(hits) / len(in_vocab)) if in_vocab else float("nan"),
        in_vocabulary=in_vocab,
        outside_vocabulary=outside,
    )


# --- MLM head ---------------------------------------------------------------------------


@dataclass(eq=False)
class MLMHead:
    """A trained masked-LM head, or the reason there is none.

    ``model`` is the AutoModelForMaskedLM (None when unavailable); ``note`` says what was
    found; ``available`` is True when the checkpoint holds every head weight.
    """

    model: object | None
    note: str
    missing: tuple[str, ...] = ()

    @property
    def available(self) -> bool:
        return self.model is not None

    def logits(self, hidden):
        """torch [N, V] vocabulary logits of hidden states [N, D] (torch)."""
        m = self.model
        for attr in ("cls", "lm_head", "predictions"):  # BERT; RoBERTa / MPNet / DeBERTa; ALBERT
            head = getattr(m, attr, None)
            if callable(head):
                return head(hidden)
        if hasattr(m, "generator_predictions"):  # ELECTRA generator
            return m.generator_lm_head(m.generator_predictions(hidden))
        if hasattr(m, "vocab_projector"):  # DistilBERT
            return m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(hidden))))
        raise ValueError(f"clsviz does not know where the masked-LM head of {type(m).__name__} sits.")


def _knows_head(model) -> bool:
    return any(callable(getattr(model, a, None)) for a in ("cls", "lm_head", "predictions")) or hasattr(
        model, "generator_predictions"
    ) or hasattr(model, "vocab_projector")


def load_mlm_head(encoder: Encoder) -> MLMHead:
    """Load the masked-LM head of ``encoder``'s checkpoint, if it has a trained one.

    Loads ``AutoModelForMaskedLM`` from the same source (safetensors only, no remote code)
    and checks the loading report: any head weight missing from the checkpoint means the
    head would be random, so no head is returned and ``note`` says which weights are absent.
    """
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    source = encoder.info.source
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            source, trust_remote_code=False, use_safetensors=True, output_loading_info=True
        )
    except ValueError as exc:
        return MLMHead(
            None,
            f"transformers has no masked-LM model class for '{encoder.name}' ({encoder.info.model_type}): "
            f"{str(exc).splitlines()[0]}",
        )
    except (OSError, ImportError) as exc:
        return MLMHead(None, f"The masked-LM weights of '{encoder.name}' could not be loaded: {str(exc).splitlines()[0]}")
    prefix = getattr(model, "base_model_prefix", "") + "."
    missing = tuple(sorted(k for k in info.get("missing_keys", ()) if not k.startswith(prefix)))
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        return MLMHead(
            None,
            f"'{encoder.name}' has no trained masked-LM head: its checkpoint holds no weights for {shown}. "
            "The checkpoint was saved without the pre-training head (common for sentence-embedding "
            "models), so there is nothing trained to read the [CLS] vector with.",
            missing,
        )
    if not _knows_head(model):
        return MLMHead(None, f"clsviz does not know where the masked-LM head of {type(model).__name__} sits.")
    model.eval()
    model.to(encoder.device)
    for p in model.parameters():
        p.requires_grad_(False)
    return MLMHead(model, f"'{encoder.name}' has a trained masked-LM head ({type(model).__name__}).")


def mlm_reading(head: MLMHead, cls_vectors: np.ndarray, tokenizer, k: int = 5) -> pd.DataFrame:
    """Top-``k`` tokens the MLM head reads from [CLS] vectors, one row per (layer, rank).

    cls_vectors : float [L + 1, D] (e.g. ``trace.hidden_states[:, trace.cls_index]``).
    Columns: layer, rank, token, token_id, probability (softmax over the vocabulary), logit.
    The head was trained on the last layer's output only; earlier layers are read as is.
    """
    import torch

    if not head.available:
        raise ValueError(head.note)
    device = next(head.model.parameters()).device
    with torch.inference_mode():
        logits = head.logits(torch.as_tensor(np.asarray(cls_vectors), dtype=torch.float32, device=device))
        probs = torch.softmax(logits.float(), dim=-1)
        top = torch.topk(probs, k=min(int(k), probs.shape[-1]), dim=-1)
    ids = top.indices.cpu().numpy()
    rows = []
    for layer in range(ids.shape[0]):
        tokens = tokenizer.convert_ids_to_tokens(ids[layer].tolist())
        for rank in range(ids.shape[1]):
            j = int(ids[layer, rank])
            rows.append(
                {
                    "layer": layer,
                    "rank": rank + 1,
                    "token": str(tokens[rank]),
                    "token_id": j,
                    "probability": float(top.values[layer, rank]),
                    "logit": float(logits[layer, j]),
                }
            )
    return pd.DataFrame(rows)


# --- plain sentences ---------------------------------------------------------------------


def _best_per_pooling(table: pd.DataFrame, column: str, fmt: str) -> str:
    """"cls 76% (layer 6), mean 72% (layer 6)": each pooling's best value and its layer."""
    parts = []
    for s in table["pooling"].unique():
        sub = table[table["pooling"] == s]
        row = sub.loc[sub[column].idxmax()]
        parts.append(f"{s} {format(float(row[column]), fmt)} (layer {int(row['layer'])})")
    return ", ".join(parts)


def summarize_recall(table: pd.DataFrame) -> str:
    """One plain sentence comparing cls and mean on paraphrase recall@1 (best layer each)."""
    if table.empty:
        return ""
    first = table.iloc[0]
    best = _best_per_pooling(table, "recall_at_1", ".0%")
    return (f"The nearest other sentence is the paraphrase partner for {best} of {int(first['queries'])} queries "
            f"among {int(first['candidates'])} candidates; picking at random would succeed "
            f"{float(first['chance']):.1%} of the time.")


def summarize_bow(table: pd.DataFrame) -> str:
    """One plain sentence on held-out bag-of-words F1 (best layer per pooling vs the baseline)."""
    if table.empty:
        return ""
    return (
        f"On held-out sentences a linear decoder names their words with F1 {_best_per_pooling(table, 'f1', '.2f')}, "
        f"against {float(table['baseline_f1'].iloc[0]):.2f} for guessing the most frequent words without looking "
        "at the vector."
    )


def summarize_mlm_reading(reading: pd.DataFrame, text: str) -> str:
    """One plain sentence on an :func:`mlm_reading` table: the top token at the last layer, and
    which tokens of ``text`` appear among the readings at any layer."""
    if reading.empty:
        return ""
    last = reading[(reading["layer"] == reading["layer"].max()) & (reading["rank"] == 1)].iloc[0]
    words = {w.lower() for w in text.split()}
    found = sorted({tok for tok in reading["token"] if tok.lower().strip("Ġ▁#") in words})
    return (
        f"at the last layer the head reads '{last['token']}' from [CLS] (probability {last['probability']:.1%}); "
        + (f"tokens of the sentence among the top readings: {', '.join(found)}." if found
           else "none of the sentence's words is among the top readings at any layer.")
    )
