"""A trained inverter: recover the sentence from one vector (a layer's [CLS], mean or max).

:func:`train_inverter` fits a small conditional decoder (:mod:`clsviz.experiments.inverter_net`)
on (vector, sentence) pairs with teacher forcing; the :class:`Inverter` it returns writes a
sentence for a vector (``invert``) and scores itself on texts (``evaluate``).

Setup, chosen to mirror vec2text's (Morris et al. 2023) at a size a CPU trains in minutes:

* texts are cut to their first ``max_tokens`` word pieces (32, vec2text's shortest setting)
  *before* they are embedded, so the vector and the sentence to recover are the same text;
* the decoder writes the encoder's own word pieces, restricted to those of its training texts
  (a piece never seen in training cannot be written: :attr:`Inverter.vocabulary`);
* **correction steps** (vec2text's idea, trained here on corrupted sentences rather than on a
  first model's guesses): the guess is embedded with the same encoder, layer and pooling, the
  decoder is conditioned on the target vector, the guess's vector and their difference, and
  writes again; of all guesses the one whose vector is closest (cosine) to the target is kept.

The encoder is shared and read-only: it is only called to embed texts (no hooks, no copies
changed). Training runs on CUDA when it is available (``device=None``), on the CPU otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..encoder import Encoder
from ..layers import check_layer
from ..metrics import cosine
from ..pooling import check_pooling
from ..progress import ProgressFn, check_cancel
from ..vectors import check_poolings, extract
from .inverter_net import PrefixDecoder, greedy_decode
from .text_match import score_pairs

__all__ = ["MAX_CORRECTIONS", "MAX_STEPS", "Inverter", "InverterState", "TrainingTexts", "check_corrections",
           "check_steps", "embed_texts", "fit_inverter", "pick_device", "prepare_texts", "train_inverter"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
_SPECIAL = 4

MAX_STEPS = 100_000
"""The most training steps one inverter may take (the default is 600; more is refused before anything is embedded)."""

MAX_CORRECTIONS = 50
"""The most correction steps after the first guess (each embeds every guess once more)."""


def _whole(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high:,}, got {value!r}.")
    return int(value)


def check_steps(steps) -> int:
    """``steps`` as an int if it is a whole number from 1 to :data:`MAX_STEPS`, else ValueError saying so."""
    return _whole("steps", steps, 1, MAX_STEPS)


def check_corrections(corrections) -> int:
    """``corrections`` as an int if it is a whole number from 0 to :data:`MAX_CORRECTIONS`, else ValueError."""
    return _whole("corrections", corrections, 0, MAX_CORRECTIONS)


@contextmanager
def torch_threads(n: int | None):
    """Context manager: torch's CPU threads for the current thread set to ``n`` (None: unchanged),
    restored afterwards. With the OpenMP backend the setting belongs to the calling thread, so
    other threads (other sessions' forward passes) keep theirs."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_device(device: str | None = None) -> torch.device:
    """The device to train on: ``device`` when given, else CUDA when available, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _pieces(encoder: Encoder, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    with encoder.lock:
        ids = encoder.tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True,
                                verbose=False)["input_ids"]
    return [list(r[: int(max_tokens)]) for r in ids]


def _decode(encoder: Encoder, pieces: Sequence[Sequence[int]]) -> list[str]:
    with encoder.lock:
        return [encoder.tokenizer.decode(list(p), skip_special_tokens=True).strip() for p in pieces]


def prepare_texts(encoder: Encoder, texts: Sequence[str], max_tokens: int = 32) -> tuple[list[str], list[list[int]]]:
    """(references, pieces): each text's first ``max_tokens`` word pieces and their decoded string,
    the sentence an inverter is asked to recover. Raises ValueError for empty texts."""
    texts = [t if isinstance(t, str) else str(t) for t in texts]
    empty = [i + 1 for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(f"{len(empty)} text(s) are empty (rows {', '.join(map(str, empty[:10]))}); give sentences.")
    pieces = _pieces(encoder, texts, max_tokens)
    return _decode(encoder, pieces), pieces


def embed_texts(encoder: Encoder, texts: Sequence[str], layer: int, pooling: str, cancel=None) -> np.ndarray:
    """float32 [N, D]: the texts' vectors at ``layer`` with ``pooling`` (one batched forward pass)."""
    return extract(encoder, list(texts), poolings=(pooling,), cancel=cancel).get(pooling, layer)


@dataclass(frozen=True, eq=False)
class TrainingTexts:
    """What training reads, embedded once (every layer of the given poolings) and shareable
    between the inverters of a ladder.

    * ``references`` / ``pieces``: the sentences to recover (:func:`prepare_texts`);
    * ``vectors``: :class:`clsviz.PooledVectors` of ``references``;
    * ``corrupted``: PooledVectors of one corrupted copy of each reference (the hypotheses
      correction steps learn from), or None when training has no correction steps.
    """

    references: tuple[str, ...]
    pieces: tuple[tuple[int, ...], ...]
    vectors: object
    corrupted: object | None = None
    max_tokens: int = 32

    @classmethod
    def build(cls, encoder: Encoder, texts: Sequence[str], poolings: Sequence[str] = ("cls",), max_tokens: int = 32,
              correction: bool = True, seed: int = 0, cancel=None, progress: ProgressFn | None = None) -> TrainingTexts:
        references, pieces = prepare_texts(encoder, texts, max_tokens)
        if len(references) < 2:
            raise ValueError(f"{len(references)} training text(s); an inverter needs at least 2.")
        total = 2 if correction else 1
        vectors = extract(encoder, references, poolings=tuple(poolings), cancel=cancel)
        if progress is not None:
            progress(1, total, "Embedding the training texts")
        corrupted = None
        if correction:
            broken = _decode(encoder, _corrupt(pieces, np.random.default_rng(seed + 1)))
            broken = [b if b.strip() else references[(i + 1) % len(references)] for i, b in enumerate(broken)]
            corrupted = extract(encoder, broken, poolings=tuple(poolings), cancel=cancel)
            if progress is not None:
                progress(2, total, "Embedding corrupted copies for the correction steps")
        return cls(tuple(references), tuple(tuple(p) for p in pieces), vectors, corrupted, int(max_tokens))


def _corrupt(pieces: Sequence[Sequence[int]], rng: np.random.Generator) -> list[list[int]]:
    """One corrupted copy per sequence: a share (10-50%) of its pieces replaced by pieces of other
    texts or deleted; never the sequence itself."""
    pool = np.array(sorted({p for row in pieces for p in row}) or [0])
    out = []
    for row in pieces:
        rate = rng.uniform(0.1, 0.5)
        new = []
        for p in row:
            u = rng.random()
            if u < rate * 0.7:
                new.append(int(rng.choice(pool)))
            elif u >= rate:
                new.append(int(p))
        if new == list(row) and row:
            new[int(rng.integers(len(new)))] = int(rng.choice(pool))
        out.append(new)
    return out


class Inverter:
    """A trained inverter for one (encoder, layer, pooling). Made by :func:`train_inverter`.

    Attributes: ``layer`` (0..L), ``pooling``, ``vocabulary`` (the encoder ids it can write),
    ``history`` (DataFrame step, loss), ``steps_run``, ``device``, ``correction`` (whether it
    was trained for correction steps).
    """

    def __init__(self, encoder: Encoder, net: PrefixDecoder, vocabulary: tuple[int, ...], layer: int, pooling: str,
                 mean: np.ndarray, scale: np.ndarray, max_tokens: int, history: pd.DataFrame, correction: bool):
        self.encoder, self.net, self.vocabulary = encoder, net, vocabulary
        self.layer, self.pooling, self.max_tokens = layer, pooling, max_tokens
        self.mean_, self.scale_, self.history, self.correction = mean, scale, history, correction
        self.steps_run = int(history["step"].max()) + 1 if len(history) else 0

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def state(self) -> InverterState:
        """What was learnt, without the encoder: picklable, attached again with
        :meth:`InverterState.attach`."""
        weights = {k: v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()}
        return InverterState(self.encoder.name, dict(self.net.config), weights, self.vocabulary, self.layer,
                             self.pooling, self.mean_, self.scale_, self.max_tokens, self.history, self.correction)

    def _standard(self, vectors: np.ndarray) -> torch.Tensor:
        z = (np.asarray(vectors, dtype=np.float32) - self.mean_) / self.scale_
        return torch.as_tensor(z, dtype=torch.float32, device=self.device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [N, D]: texts cut to ``max_tokens`` pieces, embedded as in training."""
        references, _ = prepare_texts(self.encoder, texts, self.max_tokens)
        return embed_texts(self.encoder, references, self.layer, self.pooling)

    def _write(self, target: torch.Tensor, hypothesis: torch.Tensor | None, batch_size: int) -> list[str]:
        out: list[str] = []
        for start in range(0, len(target), batch_size):
            sl = slice(start, start + batch_size)
            cond = self.net.conditioning(target[sl], None if hypothesis is None else hypothesis[sl])
            rows = greedy_decode(self.net, cond, BOS, EOS, self.max_tokens, banned=(PAD, BOS, UNK))
            out += _decode(self.encoder, [[self.vocabulary[j - _SPECIAL] for j in r if j >= _SPECIAL] for r in rows])
        return out

    def invert(self, texts_or_vectors, corrections: int = 0, batch_size: int = 64) -> list[str]:
        """The sentence recovered from each vector.

        texts_or_vectors : a list of texts (embedded first with the same encoder, layer and
            pooling), or float [N, D] / [D] vectors to condition on.
        corrections : correction steps after the first guess (0 = one pass).
        """
        check_corrections(corrections)  # before the texts are embedded
        vectors = self._vectors(texts_or_vectors)
        return self._invert(vectors, corrections, batch_size)[0]

    def _vectors(self, texts_or_vectors) -> np.ndarray:
        if isinstance(texts_or_vectors, str):
            texts_or_vectors = [texts_or_vectors]
        if isinstance(texts_or_vectors, (list, tuple)) and texts_or_vectors and all(isinstance(t, str) for t in texts_or_vectors):
            return self.embed(texts_or_vectors)
        vectors = np.asarray(texts_or_vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None]
        d = self.net.vector_size
        if vectors.ndim != 2 or vectors.shape[1] != d:
            raise ValueError(f"Expected texts or vectors of size {d} ([N, {d}] or [{d}]); got shape {list(vectors.shape)}.")
        if not np.isfinite(vectors).all():
            raise ValueError("The vectors hold NaN or infinite values; give finite vectors.")
        return vectors

    def _invert(self, vectors: np.ndarray, corrections: int, batch_size: int) -> tuple[list[str], np.ndarray]:
        """(outputs, cosine of each output's vector to its target; NaN when not computed)."""
        corrections = check_corrections(corrections)
        if corrections and not self.correction:
            raise ValueError("This inverter was trained without correction steps; train it with correction=True.")
        target = self._standard(vectors)
        best = self._write(target, None, batch_size)
        if not corrections:
            return best, np.full(len(best), np.nan)
        best_cos = self._cosines(best, vectors)
        for _ in range(corrections):
            guess_vectors = self._embed_outputs(best, vectors)
            guesses = self._write(target, self._standard(guess_vectors), batch_size)
            cos = self._cosines(guesses, vectors)
            better = cos > best_cos
            best = [g if b else o for g, o, b in zip(guesses, best, better)]
            best_cos = np.where(better, cos, best_cos)
        return best, best_cos

    def _embed_outputs(self, outputs: Sequence[str], fallback: np.ndarray) -> np.ndarray:
        """Vectors of the outputs; an empty output keeps the target's own vector in its row
        (conditioning on "no difference")."""
        out = np.array(fallback, dtype=np.float32, copy=True)
        rows = [i for i, o in enumerate(outputs) if o.strip()]
        if rows:
            out[rows] = embed_texts(self.encoder, [outputs[i] for i in rows], self.layer, self.pooling)
        return out

    def _cosines(self, outputs: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        rows = [i for i, o in enumerate(outputs) if o.strip()]
        cos = np.full(len(outputs), -np.inf)
        if rows:
            got = embed_texts(self.encoder, [outputs[i] for i in rows], self.layer, self.pooling)
            cos[rows] = cosine(got, vectors[rows])
        return cos

    def evaluate(self, texts: Sequence[str], corrections: int = 0, vectors: np.ndarray | None = None,
                 cosines: bool = True) -> pd.DataFrame:
        """Recover each text from its vector and score it.

        Columns: ``text`` (as given), ``reference`` (its first ``max_tokens`` pieces as the
        tokenizer writes them: what is scored against), ``output``, ``token_f1`` (word F1,
        0-1), ``bleu`` (sentence BLEU, 0-100), ``exact`` (bool), ``cosine`` (of the output's
        vector to the text's; NaN for an empty output, or everywhere with ``cosines=False`` and no
        correction steps: it costs one more encoder pass). ``vectors`` [N, D] skips embedding.
        """
        check_corrections(corrections)
        texts = [str(t) for t in texts]
        references, _ = prepare_texts(self.encoder, texts, self.max_tokens)
        if vectors is None:
            vectors = embed_texts(self.encoder, references, self.layer, self.pooling)
        outputs, cos = self._invert(self._vectors(vectors), corrections, 64)
        if not corrections and cosines:
            cos = self._cosines(outputs, np.asarray(vectors, dtype=np.float32))
        frame = pd.DataFrame({"text": texts, "reference": references, "output": outputs})
        frame = pd.concat([frame, score_pairs(outputs, references)], axis=1)
        frame["cosine"] = np.where(np.isfinite(cos), cos, np.nan)
        return frame


@dataclass(frozen=True, eq=False)
class InverterState:
    """A trained inverter without its encoder (a background job's picklable result): the
    network's ``config`` and ``weights`` (name -> float32 array), and the rest of
    :class:`Inverter`'s state. :meth:`attach` makes a working :class:`Inverter` again."""

    model_name: str
    config: dict
    weights: dict
    vocabulary: tuple[int, ...]
    layer: int
    pooling: str
    mean: np.ndarray
    scale: np.ndarray
    max_tokens: int
    history: pd.DataFrame
    correction: bool

    def attach(self, encoder: Encoder, device: str | None = None) -> Inverter:
        """The inverter on ``encoder`` (the model it was trained on; ValueError otherwise)."""
        if encoder.name != self.model_name or encoder.info.hidden_size != self.config["vector_size"]:
            raise ValueError(f"This inverter was trained on '{self.model_name}', not on '{encoder.name}'; "
                             "train one for this model.")
        net = PrefixDecoder(**self.config)
        net.load_state_dict({k: torch.as_tensor(v) for k, v in self.weights.items()})
        net.to(pick_device(device)).eval()
        return Inverter(encoder, net, self.vocabulary, self.layer, self.pooling, self.mean, self.scale,
                        self.max_tokens, self.history, self.correction)


def _sequences(pieces: Sequence[Sequence[int]], local: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) int64 [N, T + 1]: BOS then the pieces (padded with PAD); the pieces then
    EOS (padded with -100, which the loss ignores). Pieces are local decoder ids."""
    width = max(len(r) for r in pieces) + 1
    inputs = np.full((len(pieces), width), PAD, dtype=np.int64)
    targets = np.full((len(pieces), width), -100, dtype=np.int64)
    for i, row in enumerate(pieces):
        ids = [local[p] for p in row]
        inputs[i, 0], inputs[i, 1 : len(ids) + 1] = BOS, ids
        targets[i, : len(ids)], targets[i, len(ids)] = ids, EOS
    return inputs, targets


def _schedule(steps: int):
    """Learning-rate factor per step: linear warm-up over 5% of the steps, cosine decay to 10%."""
    warm = max(1, steps // 20)
    return lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.45 * (1 + np.cos(np.pi * min(s, steps) / steps)))


def fit_inverter(encoder: Encoder, data: TrainingTexts, layer: int = -1, pooling: str = "cls", steps: int = 400,
                 seed: int = 0, progress: ProgressFn | None = None, cancel=None, *, batch_size: int = 16,
                 d_model: int = 128, num_layers: int = 2, lr: float = 3e-3, word_dropout: float = 0.1,
                 correction_share: float = 0.25, stop_loss: float = 0.05, device: str | None = None,
                 threads: int | None = 1) -> Inverter:
    """Train an :class:`Inverter` on prepared :class:`TrainingTexts` (see :func:`train_inverter`)."""
    layer = check_layer(layer, data.vectors.num_layers)
    pooling = check_pooling(pooling)
    steps, batch_size = check_steps(steps), int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    dev = pick_device(device)
    X = data.vectors.get(pooling, layer).astype(np.float32)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale < 1e-6] = 1.0  # a dimension that never changes (layer 0's [CLS]) carries nothing
    vocabulary = tuple(sorted({p for row in data.pieces for p in row}))
    inputs, targets = _sequences(data.pieces, {p: j + _SPECIAL for j, p in enumerate(vocabulary)})
    net = PrefixDecoder(X.shape[1], len(vocabulary) + _SPECIAL, d_model=d_model, num_layers=num_layers,
                        max_tokens=inputs.shape[1] - 1, seed=seed).to(dev)
    Z = torch.as_tensor((X - mean) / scale, device=dev)
    H = None
    if data.corrupted is not None and correction_share > 0:
        H = torch.as_tensor((data.corrupted.get(pooling, layer) - mean) / scale, dtype=torch.float32, device=dev)
    inputs_t, targets_t = torch.as_tensor(inputs, device=dev), torch.as_tensor(targets, device=dev)
    lengths = np.array([len(r) for r in data.pieces])
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(steps))
    rng = np.random.default_rng(seed)
    n = len(inputs)
    order, pos, ema, history = rng.permutation(n), 0, None, []
    net.train()
    # Small matrices: one CPU thread wastes nothing, and several spin against each other on a busy machine.
    with torch_threads(threads if dev.type == "cpu" else None):
        for step in range(steps):
            check_cancel(cancel, "Training the inverter")
            if pos + batch_size > n:
                order, pos = rng.permutation(n), 0
            picked = order[pos : pos + batch_size]
            pos += batch_size
            rows = torch.as_tensor(picked, device=dev)
            width = int(lengths[picked].max()) + 1  # this batch's longest text: no columns of padding only
            tok, want = inputs_t[rows, :width], targets_t[rows, :width]
            drop = torch.as_tensor(rng.random(tuple(tok.shape)) < word_dropout, device=dev) & (tok >= _SPECIAL)
            tok = torch.where(drop, torch.full_like(tok, UNK), tok)
            cond = net.conditioning(Z[rows])  # the first pass: no hypothesis
            if H is not None:  # a share of the rows: a correction step from a corrupted copy's vector
                use = torch.as_tensor(rng.random(len(rows)) < correction_share, device=dev)[:, None]
                cond = torch.where(use, net.conditioning(Z[rows], H[rows]), cond)
            logits = net(cond, tok)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), want.reshape(-1),
                                                     ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            value = float(loss.detach())
            history.append((step, value))
            ema = value if ema is None else 0.9 * ema + 0.1 * value
            if progress is not None and (step % 10 == 0 or step == steps - 1):
                progress(step + 1, steps, f"Training the inverter: step {step + 1} of {steps}, loss {ema:.3f}")
            if step >= 20 and ema < stop_loss:  # the training texts are learnt: more steps change nothing
                break
    net.eval()
    return Inverter(encoder, net, vocabulary, layer, pooling, mean, scale, data.max_tokens,
                    pd.DataFrame(history, columns=["step", "loss"]), H is not None)


def train_inverter(enc: Encoder, texts: Sequence[str], layer: int = -1, pooling: str = "cls", steps: int = 400,
                   seed: int = 0, progress: ProgressFn | None = None, cancel=None, *, max_tokens: int = 32,
                   correction: bool = True, device: str | None = None, **options) -> Inverter:
    """Train an inverter that recovers ``texts`` from their vectors at ``layer`` with ``pooling``.

    A decoder of ``num_layers`` transformer layers (width ``d_model``) reads the vector through
    a learned prefix and is trained with teacher forcing (AdamW, ``lr`` with warm-up and cosine
    decay, ``batch_size`` texts per step, ``word_dropout`` of its input pieces so it must read
    the vector) for ``steps`` steps, or until its training loss falls below ``stop_loss``.
    With ``correction`` a share of the steps (``correction_share``) trains the correction
    steps. Deterministic for a ``seed`` on one device. ``progress(done, total, message)``;
    ``cancel`` (an Event) stops it with :class:`clsviz.progress.Cancelled`.
    ``options`` go to :func:`fit_inverter` (batch_size, d_model, num_layers, lr, word_dropout,
    correction_share, stop_loss). Returns an :class:`Inverter`.
    """
    check_poolings(enc, (pooling,))  # the settings are checked before any text is embedded
    check_layer(layer, enc.info.num_layers)
    check_steps(steps)
    data = TrainingTexts.build(enc, texts, (pooling,), max_tokens, correction, seed, cancel)
    return fit_inverter(enc, data, layer, pooling, steps, seed, progress, cancel, device=device, **options)
