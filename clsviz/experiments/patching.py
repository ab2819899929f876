"""Patching [CLS] between sentences: where does the sentence's identity live in [CLS], and
from which layer on is it too late for the remaining blocks to change the outcome?

:func:`patch_profile` does it for two typed sentences; :func:`patching_sweep` for pairs of
corpus sentences with different labels, read by a probe fitted on clean final [CLS] vectors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..blocks import InterventionError, run_stack
from ..encoder import Encoder
from ..metrics import cosine
from ..tracing import check_summary_token, special_positions, tokenize
from ..vectors import pad_rows
from ..verdicts import estimate
from .causal_runs import CleanProbe, SweepResult, TokenizedBatches, labelled_texts, run_last, ticker
from .probe import ProbeError

__all__ = ["FLIP_MAJORITY", "REFERENCE_SOURCES", "check_pair", "patch_profile", "patching_sweep", "summarize_patch_profile", "summarize_patching"]

FLIP_MAJORITY = 0.5
"""A layer "carries the label" when at least this share of the patched pairs flip."""

REFERENCE_SOURCES = (
    "Stock markets fell sharply after the announcement.",
    "The cat chased the dog across the yard.",
)
"""Source sentences for a patch profile when only the target is given (the HTML report, the
page's default): the first one that is not the target itself."""


def check_pair(source, target) -> None:
    """Raise :class:`~clsviz.blocks.InterventionError` when two tokenized texts are the same sentence."""
    if np.array_equal(source.input_ids, target.input_ids):
        raise InterventionError(
            "The source and the target are the same sentence (the same tokens), so patching [CLS] "
            "from one into the other changes nothing. Pick two different sentences."
        )


def patch_profile(encoder: Encoder, source: str, target: str, max_tokens: int | None = None) -> pd.DataFrame:
    """For every hidden-state index l (0..L), the target's final [CLS] after [CLS] is patched
    from the source at l: its cosine to the source's and to the target's clean final [CLS].

    Columns: ``layer``, ``cos_to_source``, ``cos_to_target``. Raises
    :class:`~clsviz.blocks.InterventionError` when source and target are the same sentence.
    """
    import torch

    check_summary_token(encoder.info, "Patching [CLS] layer by layer")
    runs = []
    for text in (source, target):
        tt = tokenize(encoder, text, max_tokens)
        ids = torch.as_tensor(tt.input_ids, device=encoder.device)[None]
        with torch.inference_mode():
            runs.append((tt, ids, special_positions(tt, encoder.info)[0], run_stack(encoder, ids)))
    (src, _, src_cls, src_hidden), (tgt, tgt_ids, tgt_cls, tgt_hidden) = runs
    check_pair(src, tgt)
    finals = [h[-1, 0, i].float().cpu().numpy() for h, i in ((src_hidden, src_cls), (tgt_hidden, tgt_cls))]
    rows = []
    for layer in range(encoder.info.num_layers + 1):
        h = tgt_hidden[layer].clone()
        h[:, tgt_cls] = src_hidden[layer, 0, src_cls]
        with torch.inference_mode():
            final = run_stack(encoder, start=layer, hidden=h)[-1, 0, tgt_cls].float().cpu().numpy()
        rows.append(dict(layer=layer, cos_to_source=float(cosine(final, finals[0])),
                         cos_to_target=float(cosine(final, finals[1]))))  # fmt: skip
    return pd.DataFrame(rows)


def summarize_patch_profile(table: pd.DataFrame) -> str:
    """One plain sentence of a :func:`patch_profile`: from which layer on the patched target
    ends closer to the source's final [CLS] than to its own."""
    rows = table.sort_values("layer").reset_index(drop=True)
    closer = rows[rows["cos_to_source"] > rows["cos_to_target"]]
    if closer.empty:
        return "Wherever [CLS] is patched, the target's final [CLS] stays closer to its own than to the source's."
    first = closer.iloc[0]
    text = (f"Patched at layer {int(first['layer'])} or later, the target's final [CLS] ends closer to the source's "
            f"(cosine {first['cos_to_source']:.3f}) than to its own ({first['cos_to_target']:.3f})")
    if int(first["layer"]) == 0:
        return text + "."
    before = rows[rows["layer"] == first["layer"] - 1].iloc[0]
    return text + (f"; patched at layer {int(before['layer'])}, the remaining blocks pull it back to the target "
                   f"(cosine {before['cos_to_target']:.3f} to its own).")


def _pairs(probe: CleanProbe, y: np.ndarray, predicted: np.ndarray, n: int, seed: int) -> np.ndarray:
    """int [P, 2] (source, target): texts of one fold (unseen by its probe), different labels,
    both read correctly when clean; a seeded sample of at most ``n``."""
    found = []
    for fold in range(len(probe.models_)):
        ok = np.flatnonzero((probe.fold_of_ == fold) & (predicted == y))
        s, t = np.meshgrid(ok, ok, indexing="ij")
        keep = y[s] != y[t]
        found.append(np.stack([s[keep], t[keep]], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    if len(pairs) == 0:
        raise ProbeError(
            "No usable pair: patching needs two texts with different labels in the same fold that the "
            "clean probe reads correctly. Use more texts, or a label the model separates."
        )
    rng = np.random.default_rng(seed)
    return pairs[np.sort(rng.choice(len(pairs), size=min(n, len(pairs)), replace=False))]


def patching_sweep(encoder: Encoder, texts: Sequence[str], labels: Sequence, *, pairs: int = 200, folds: int = 5,
                   seed: int = 0, batch_size: int = 64, max_tokens: int | None = None, label_name: str = "label",
                   progress=None, cancel=None) -> SweepResult:  # fmt: skip
    """Patch [CLS] from a source text into a target text with a different label at every
    hidden-state index; one row per ``layer`` (0..L).

    Columns: ``layer``, ``flip_rate`` (share of pairs whose patched target the probe reads as
    the source's label; ``flip_low`` / ``flip_high`` its 95% bootstrap interval over the pairs), ``kept_rate`` (still read as the target's), ``cos_to_source`` (mean
    cosine of the patched final [CLS] to the source's clean final [CLS]), ``n_pairs``,
    ``clean_accuracy``, ``chance``. The probe is fitted on clean final [CLS] vectors, fold by
    fold; a pair's texts share a fold and were both read correctly, so at layer L (the final
    [CLS] swapped whole) every pair flips.
    """
    import torch

    start_time = time.perf_counter()
    if labels is None:
        raise ProbeError("Patching is read by a probe: give a label column (with at least two classes).")
    labelled = labelled_texts(texts, labels, folds, label_name)
    tokens = TokenizedBatches.from_texts(encoder, labelled.texts, max_tokens)
    num_layers, dim = encoder.info.num_layers, encoder.info.hidden_size
    batches = list(tokens.batches(encoder, batch_size))
    step = ticker(progress, len(batches) + -(-pairs // batch_size) * (num_layers + 1), cancel, "The patching sweep")
    cls_states = np.zeros((len(tokens), num_layers + 1, dim), np.float32)
    for batch in batches:
        with torch.inference_mode():
            hidden = run_stack(encoder, batch.ids, attention_mask=batch.mask)
        at = torch.arange(len(batch.rows), device=hidden.device)
        cls_states[batch.rows] = hidden[:, at, batch.cls_index].transpose(0, 1).float().cpu().numpy()
        step("Clean runs")
    finals = cls_states[:, -1]
    probe = CleanProbe(folds, seed).fit(finals, labelled.y)
    predicted = probe.predict(finals)
    chosen = _pairs(probe, labelled.y, predicted, pairs, seed)
    step.total = len(batches) + -(-len(chosen) // batch_size) * (num_layers + 1)
    patched = np.zeros((num_layers + 1, len(chosen), dim), np.float32)
    for lo in range(0, len(chosen), batch_size):
        chunk = chosen[lo : lo + batch_size]
        src, tgt = chunk[:, 0], chunk[:, 1]
        ids, mask, _, _ = pad_rows(encoder, tokens.ids, tokens.special, tgt)
        at = torch.arange(len(chunk), device=ids.device)
        where = torch.as_tensor(tokens.cls_index[tgt], device=ids.device)
        with torch.inference_mode():
            clean = run_stack(encoder, ids, attention_mask=mask)
            for layer in range(num_layers + 1):
                vectors = torch.as_tensor(cls_states[src, layer], device=ids.device, dtype=clean.dtype)
                h = clean[layer].clone()
                h[at, where] = vectors
                out = run_last(encoder, h, mask, layer)
                patched[layer, lo : lo + len(chunk)] = out[at, where].float().cpu().numpy()
                step(f"Patching at layer {layer}")
    rows = []
    for layer in range(num_layers + 1):
        read = probe.predict(patched[layer], texts=chosen[:, 1])
        flips = estimate((read == labelled.y[chosen[:, 0]]).astype(np.float64), seed=seed, unit="pairs")
        rows.append(dict(
            layer=layer, flip_rate=flips.value, flip_low=flips.low, flip_high=flips.high,
            kept_rate=float(np.mean(read == labelled.y[chosen[:, 1]])),
            cos_to_source=float(cosine(patched[layer], finals[chosen[:, 0]]).mean()),
            n_pairs=len(chosen), clean_accuracy=float(np.mean(predicted == labelled.y)), chance=labelled.chance,
        ))  # fmt: skip
    table = pd.DataFrame(rows)
    return SweepResult(
        kind="patching", table=table, finding=summarize_patching(table), model_name=encoder.name,
        label=labelled.label, n=len(tokens), seconds=time.perf_counter() - start_time,
        messages=(*labelled.messages, *tokens.notes(),
                  f"{len(chosen)} pairs of texts with different labels, both read correctly by the clean probe."),
    )  # fmt: skip


def summarize_patching(table: pd.DataFrame) -> str:
    """One plain sentence of a :func:`patching_sweep` table: the first layer from which the
    patched [CLS] carries its own sentence's label into the other sentence."""
    rows = table.sort_values("layer").reset_index(drop=True)
    if rows.empty:
        return "No patching was run."
    last = int(rows["layer"].iloc[-1])
    low = rows["flip_low"].fillna(rows["flip_rate"]) if "flip_low" in rows.columns else rows["flip_rate"]
    carried = rows[low >= FLIP_MAJORITY]  # the whole interval at or above the majority
    first = int(carried["layer"].iloc[0]) if not carried.empty else None
    if first is None:
        return (f"Patched [CLS] never carries its label into the other sentence (at most "
                f"{rows['flip_rate'].max():.0%} of the pairs flip): the remaining blocks re-read the target's words.")
    if first == 0:
        return f"Even the embedding-layer [CLS] carries the label into the other sentence ({rows['flip_rate'].iloc[0]:.0%} of the pairs flip)."
    before = rows[rows["layer"] == first - 1].iloc[0]
    at = rows[rows["layer"] == first].iloc[0]
    if first == last:
        return (f"Only the final [CLS] carries the sentence's label: patched at layer {last - 1} or earlier, the "
                f"remaining blocks re-read the target's words and overwrite it (at layer {last - 1} "
                f"{before['flip_rate']:.0%} of the pairs flip, {before['kept_rate']:.0%} keep the target's label).")
    interval = "" if pd.isna(at.get("flip_low", np.nan)) else f" (95% interval {at['flip_low']:.0%}–{at['flip_high']:.0%})"
    return (f"From layer {first} on, [CLS] carries its sentence's label into the other sentence: patched there, "
            f"{at['flip_rate']:.0%}{interval} of the pairs are read as the source's label, against {before['flip_rate']:.0%} "
            f"at layer {first - 1}, where the remaining blocks still overwrite it with the target's words.")
