"""Why first, on a corpus: probe the vector in the [CLS] slot when [CLS] is moved or replaced.

:func:`moved_cls_vectors` reads the slot vector of every text for one variant of
:mod:`clsviz.experiments.position`; :func:`position_probe` runs the linear probe of
:mod:`clsviz.experiments.probe` on them, so the numbers compare with the pooling probe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..encoder import Encoder
from ..narrative import probe_gap_summary
from ..vectors import hidden_batches, tokenize_texts
from .position import VARIANT_LABELS, plan_variants, variant_inputs
from .probe import ProbeError, check_labels, run_probe

__all__ = ["moved_cls_vectors", "position_probe", "summarize_probe"]



def moved_cls_vectors(
    encoder: Encoder,
    texts: Sequence[str],
    variant: str,
    shift: int = 20,
    replacement: str = "the",
    batch_size: int = 32,
    max_tokens: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """float32 [N, L + 1, D]: every text's slot vector after every layer, for one variant.

    Texts are tokenized as usual, rebuilt as ``variant`` (see :func:`variant_inputs`),
    length-sorted and run in padded batches with the fast attention kernel.
    ``progress(done, total)`` is called after each batch. For ``shifted`` the shift is cut to
    what the longest text leaves room for.
    """
    import torch

    tokenized = tokenize_texts(encoder, texts, max_tokens)
    info = encoder.info
    all_ids = [np.asarray(x, dtype=np.int64) for x in tokenized.input_ids]
    all_special = [np.asarray(x, dtype=bool) for x in tokenized.special_masks]
    longest = max(len(x) for x in all_ids) + (1 if variant in ("cls_end", "cls_middle") else 0)
    plan = plan_variants(encoder, [variant], shift, replacement, longest)
    if variant not in plan.variants:
        raise ValueError(" ".join(plan.notes) or f"variant {variant!r} cannot run on '{encoder.name}'")
    built = []
    for ids, special in zip(all_ids, all_special):
        hits = np.flatnonzero((ids == info.cls_token_id) & special)
        built.append(
            variant_inputs(
                ids, special, int(hits[0]) if len(hits) else 0, variant,
                mask_id=plan.mask_id, replacement_id=plan.replacement_id, shift=plan.shift, offset=plan.offset,
            )
        )
    new_ids, positions, content, slots = (list(x) for x in zip(*built))
    special = [~c for c in content]
    n = len(tokenized.texts)
    out = np.empty((n, info.num_layers + 1, info.hidden_size), dtype=np.float32)
    slots = np.asarray(slots, dtype=np.int64)
    done = 0
    with torch.inference_mode():
        batches = hidden_batches(encoder, new_ids, special, batch_size, positions if plan.use_position_ids else None)
        for rows, hidden, *_ in batches:
            picked = hidden[torch.arange(len(rows), device=hidden.device), :, torch.as_tensor(slots[rows], device=hidden.device), :]
            out[rows] = picked.float().cpu().numpy()
            done += len(rows)
            if progress is not None:
                progress(done, n)
    return out


def position_probe(
    encoder: Encoder,
    texts: Sequence[str],
    labels: Sequence,
    variants: Sequence[str] = ("standard", "cls_end", "cls_middle", "mask"),
    folds: int = 5,
    seed: int = 0,
    shift: int = 20,
    replacement: str = "the",
    batch_size: int = 32,
    max_tokens: int | None = None,
    label_name: str = "label",
    progress: Callable[[float, str], None] | None = None,
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Probe accuracy of the slot vector per variant and layer.

    The probe is :func:`clsviz.experiments.probe.run_probe` (standardized logistic regression,
    stratified k-fold) on the vectors :func:`moved_cls_vectors` reads for each variant, so the
    numbers are comparable with the pooling probe. Returns (table, notes); table columns:
    variant, label, layer, accuracy, accuracy_sd, n, folds, chance, majority. Variants this
    encoder cannot run are left out with a note. ``progress(fraction, message)`` reports
    progress. Raises :class:`~clsviz.experiments.probe.ProbeError` (a ``ValueError``) for
    labels that cannot be probed (one class, classes smaller than the folds, too few rows).
    """
    texts = list(texts)
    labels = list(labels)
    if len(texts) != len(labels):
        raise ProbeError(f"{len(texts)} texts but {len(labels)} labels: give one label per text.")
    if len(set(texts)) < 2:
        raise ProbeError("All the sentences are identical, so no probe can tell them apart. Use a varied corpus.")
    present = [v for v in labels if v is not None and str(v).strip()]
    check_labels(present, folds, label_name)  # fail before the slow extraction
    wanted = list(dict.fromkeys(variants))
    notes: list[str] = []
    vectors: dict[str, np.ndarray] = {}
    for i, name in enumerate(wanted):

        def step(done, total, i=i, name=name):
            if progress is not None:
                progress(0.8 * (i + done / total) / len(wanted), f"{VARIANT_LABELS[name]}: {done}/{total} sentences")

        try:
            vectors[name] = moved_cls_vectors(encoder, texts, name, shift, replacement, batch_size, max_tokens, step)
        except ValueError as exc:
            notes.append(f"{VARIANT_LABELS[name]}: {exc}")
    if not vectors:
        raise ProbeError("None of the chosen variants can run on this model. " + " ".join(notes))

    def probe_step(done, total):
        if progress is not None:
            progress(0.8 + 0.2 * done / total, f"probing: {done}/{total} layer x variant cells")

    result = run_probe(vectors, labels, folds=folds, seed=seed, label_name=label_name, progress=probe_step)
    notes.extend(result.messages)
    table = result.table.rename(columns={"pooling": "variant", "accuracy_mean": "accuracy"})
    table["label"] = table["variant"].map(VARIANT_LABELS)
    table["chance"] = result.chance
    table["majority"] = result.majority
    order = {v: i for i, v in enumerate(wanted)}
    table = table.sort_values(["variant", "layer"], key=lambda c: c.map(order) if c.name == "variant" else c)
    columns = ["variant", "label", "layer", "accuracy", "accuracy_sd", "n", "folds", "chance", "majority"]
    return table[columns].reset_index(drop=True), tuple(notes)



def summarize_probe(table: pd.DataFrame) -> str:
    """One plain sentence comparing each variant with the standard position at every layer
    (:func:`clsviz.narrative.probe_gap_summary`): where a moved [CLS] loses and where it does not."""
    return probe_gap_summary(table, "standard", VARIANT_LABELS)
