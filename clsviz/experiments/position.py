"""Why is [CLS] first? Move it, drop it, replace it, shift the positions, and compare.

Self-attention in an encoder is bidirectional: every token attends to every other token
in every layer, so the first slot has no privileged view of the sentence. The only things
that make position 0 special are the learned token embedding of [CLS] and the learned
position embedding of position 0 (plus, in BERT, whatever pre-training objective was put on
that slot). These experiments change exactly those two things and measure what happens.

Variants (names in :data:`POSITION_VARIANTS`, one dispatcher :func:`variant_inputs`):

* ``standard``: the tokenizer's input, [CLS] at position 0;
* ``cls_end``: [CLS] moved after the closing special token (the very last position);
* ``cls_middle``: [CLS] moved into the middle of the text;
* ``no_cls``: [CLS] removed; the "slot" read is then the first remaining token;
* ``mask``: [CLS] replaced by the mask token ([MASK], ``<mask>``);
* ``other_token``: [CLS] replaced by an ordinary word (``"the"`` by default);
* ``shifted``: the standard tokens with every position id shifted by ``shift``.

For each variant the "slot" is wherever [CLS] (or its replacement) sits. Per layer the
experiment reports the cosine of the slot vector to the standard [CLS] vector, the attention
the slot receives (mean over heads and queries), and the cosine of the slot vector to the
mean of the text's own tokens in the same run.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..encoder import OFFSET_POSITION_MODELS, Encoder
from ..keywords import accepts_max_length
from ..layers import block_row
from ..metrics import cosine
from ..narrative import position_summary
from ..tracing import check_summary_token, special_positions, tokenize

__all__ = [
    "POSITION_VARIANTS",
    "VARIANT_LABELS",
    "VARIANT_HELP",
    "PositionVariant",
    "VariantRun",
    "PositionResult",
    "accepts_position_ids",
    "position_offset",
    "VariantPlan",
    "plan_variants",
    "variant_inputs",
    "build_variants",
    "run_variant",
    "position_table",
    "position_experiment",
    "summarize_position",
]

POSITION_VARIANTS = ("standard", "cls_end", "cls_middle", "no_cls", "mask", "other_token", "shifted")
"""The input variants, in display order; ``standard`` is the reference."""

VARIANT_LABELS = {
    "standard": "standard ([CLS] first)",
    "cls_end": "[CLS] moved to the end",
    "cls_middle": "[CLS] moved to the middle",
    "no_cls": "[CLS] removed (first token read)",
    "mask": "[CLS] replaced by the mask token",
    "other_token": "[CLS] replaced by a word",
    "shifted": "position ids shifted",
}

VARIANT_HELP = {
    "standard": "the tokenizer's own input; [CLS] at position 0",
    "cls_end": "the [CLS] token placed after the closing special token, so it gets the last position",
    "cls_middle": "the [CLS] token inserted after the first half of the text's tokens",
    "no_cls": "no [CLS] at all; the vector read is the first token of the text",
    "mask": "position 0 holds the mask token instead of [CLS]: same position, different token",
    "other_token": "position 0 holds an ordinary word instead of [CLS]: same position, different token",
    "shifted": "the standard tokens, but every position id is increased by k: same tokens, other positions",
}


# --- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionVariant:
    """One input variant of one text.

    * ``input_ids``, ``position_ids``: int64 [T] (T may differ from the standard length)
    * ``tokens``: T token strings; ``content_mask``: bool [T], True for the text's own tokens
    * ``slot``: index of [CLS] or of whatever replaced it (the first token for ``no_cls``)
    """

    name: str
    input_ids: np.ndarray
    position_ids: np.ndarray
    tokens: tuple[str, ...]
    content_mask: np.ndarray
    slot: int

    @property
    def label(self) -> str:
        return VARIANT_LABELS[self.name]

    @property
    def slot_token(self) -> str:
        return self.tokens[self.slot]


@dataclass(frozen=True, eq=False)
class VariantRun:
    """One eager forward pass of a variant.

    * ``hidden_states``: float32 [L + 1, T, D] (index 0 = embeddings)
    * ``attentions``: float32 [L, H, T, T] (row = query, column = key)
    """

    variant: PositionVariant
    hidden_states: np.ndarray
    attentions: np.ndarray

    def slot_vectors(self) -> np.ndarray:
        """float32 [L + 1, D]: the slot's vector after every layer."""
        return self.hidden_states[:, self.variant.slot]

    def attention_received(self) -> np.ndarray:
        """float32 [L]: attention paid to the slot, mean over heads and over all queries."""
        return self.attentions[:, :, :, self.variant.slot].mean(axis=(1, 2))

    def content_mean(self) -> np.ndarray:
        """float32 [L + 1, D]: mean of the text's own tokens (specials excluded) per layer."""
        return self.hidden_states[:, self.variant.content_mask].mean(axis=1)


@dataclass(frozen=True, eq=False)
class PositionResult:
    """All variants of one text: the runs, the tidy table, and notes for the reader.

    ``table`` columns: variant, label, layer (0 = embeddings), slot, slot_token, seq_len,
    cos_to_standard_cls, attention_received (NaN at layer 0), cos_to_mean,
    standard_cls_to_tokens (mean cosine of the standard [CLS] to the standard run's text tokens,
    the same on every row of a layer: the yardstick for "similar").
    """

    text: str
    runs: tuple[VariantRun, ...]
    table: pd.DataFrame
    notes: tuple[str, ...]
    shift: int

    def run(self, name: str) -> VariantRun:
        for r in self.runs:
            if r.variant.name == name:
                return r
        raise KeyError(f"variant {name!r} was not run; available: {', '.join(r.variant.name for r in self.runs)}")


def accepts_position_ids(model) -> bool:
    """True when the model's forward takes explicit ``position_ids``."""
    try:
        return "position_ids" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def position_offset(encoder: Encoder) -> int:
    """The first position id the model uses (RoBERTa-style models start after the padding index)."""
    config = encoder.model.config
    if getattr(config, "model_type", "") in OFFSET_POSITION_MODELS:
        pad = getattr(config, "pad_token_id", None)
        return (pad if pad is not None else 1) + 1
    return 0


def _max_positions(encoder: Encoder) -> int:
    return int(getattr(encoder.model.config, "max_position_embeddings", None) or encoder.info.max_tokens)


def variant_inputs(
    input_ids: np.ndarray,
    special_mask: np.ndarray,
    cls_index: int,
    variant: str,
    *,
    mask_id: int | None = None,
    replacement_id: int | None = None,
    shift: int = 0,
    offset: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The ids of one variant, from a standard tokenized input.

    input_ids : int array [T]; special_mask : bool array [T]; cls_index : position of [CLS]
    Returns (input_ids [T'], position_ids [T'], content_mask [T'], slot).
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    special = np.asarray(special_mask, dtype=bool)
    n = len(ids)
    if not 0 <= cls_index < n:
        raise ValueError(f"cls_index {cls_index} is outside 0..{n - 1}")
    cls_id = ids[cls_index]
    keep = np.ones(n, dtype=bool)
    keep[cls_index] = False
    body_ids, body_special = ids[keep], special[keep]
    if variant in ("standard", "shifted"):
        new_ids, new_special, slot = ids.copy(), special.copy(), cls_index
    elif variant in ("mask", "other_token"):
        token = mask_id if variant == "mask" else replacement_id
        if token is None:
            raise ValueError(f"variant {variant!r} needs a {'mask' if variant == 'mask' else 'replacement'} token id")
        new_ids, new_special, slot = ids.copy(), special.copy(), cls_index
        new_ids[cls_index] = token
        new_special[cls_index] = True  # the replacement stands in for [CLS]: not text
    elif variant == "cls_end":
        new_ids = np.append(body_ids, cls_id)
        new_special = np.append(body_special, True)
        slot = len(new_ids) - 1
    elif variant == "cls_middle":
        content_at = np.flatnonzero(~body_special)
        if len(content_at) == 0:
            raise ValueError("the input has no text tokens to put [CLS] between")
        half = (len(content_at) + 1) // 2
        slot = int(content_at[half - 1]) + 1  # right after the first half of the text
        new_ids = np.insert(body_ids, slot, cls_id)
        new_special = np.insert(body_special, slot, True)
    elif variant == "no_cls":
        if len(body_ids) == 0:
            raise ValueError("nothing is left once [CLS] is removed")
        new_ids, new_special, slot = body_ids, body_special, 0
    else:
        raise ValueError(f"Unknown position variant {variant!r}. Valid: {', '.join(POSITION_VARIANTS)}.")
    positions = offset + np.arange(len(new_ids), dtype=np.int64)
    if variant == "shifted":
        positions = positions + int(shift)
    # For no_cls the slot is the first text token, and it stays in the text mean.
    content = ~new_special
    return new_ids.astype(np.int64), positions, content, int(slot)


@dataclass(frozen=True)
class VariantPlan:
    """What can run on this encoder, and why the rest cannot (:func:`plan_variants`)."""

    variants: tuple[str, ...]
    mask_id: int | None
    replacement_id: int | None
    replacement_token: str | None
    shift: int
    offset: int
    use_position_ids: bool
    notes: tuple[str, ...]


def plan_variants(encoder: Encoder, variants: Sequence[str], shift: int, replacement: str, seq_len: int) -> VariantPlan:
    unknown = [v for v in variants if v not in POSITION_VARIANTS]
    if unknown:
        raise ValueError(
            f"Unknown position variant(s): {', '.join(map(repr, unknown))}. Valid: {', '.join(POSITION_VARIANTS)}."
        )
    tok = encoder.tokenizer
    notes: list[str] = []
    keep: list[str] = []
    mask_id = getattr(tok, "mask_token_id", None)
    replacement_id = None
    replacement_token = None
    use_position_ids = accepts_position_ids(encoder.eager_model)
    offset = position_offset(encoder)
    max_pos = _max_positions(encoder)
    for v in dict.fromkeys(["standard", *variants]):
        if v == "mask" and mask_id is None:
            notes.append(f"'{encoder.name}' has no mask token, so the mask variant was skipped.")
            continue
        if v == "other_token":
            word = (replacement or "").strip()
            if not word:
                notes.append("No replacement word was given, so the word variant was skipped.")
                continue
            with encoder.lock:
                pieces = tok(word, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            if not pieces:
                notes.append(f"The tokenizer produced no token for {word!r}; the word variant was skipped.")
                continue
            replacement_id = int(pieces[0])
            replacement_token = tok.convert_ids_to_tokens(replacement_id)
            if len(pieces) > 1:
                notes.append(
                    f"{word!r} is {len(pieces)} tokens for this tokenizer; its first piece "
                    f"{replacement_token!r} replaces [CLS]."
                )
        if v == "shifted":
            if not use_position_ids:
                notes.append(
                    f"'{encoder.name}' ({encoder.info.model_type}) does not accept explicit position ids, "
                    "so the shifted variant cannot be run on it."
                )
                continue
            room = max_pos - offset - seq_len
            if room <= 0:
                notes.append("The sentence already fills every position the model has; nothing to shift into.")
                continue
            if shift > room:
                notes.append(
                    f"A shift of {shift} would run past the model's {max_pos} positions for this sentence; "
                    f"{room} is used instead."
                )
                shift = room
            if shift <= 0:
                notes.append("The shift is 0, so the shifted variant would equal the standard one; skipped.")
                continue
            if encoder.info.position_embedding_type != "absolute":
                notes.append(
                    f"This model's position embeddings are '{encoder.info.position_embedding_type}', not "
                    "absolute, so a uniform shift may change little by construction."
                )
        keep.append(v)
    if not use_position_ids:
        notes.append(
            "This architecture takes no position ids, so every variant uses the positions the model "
            "assigns by itself (0, 1, 2, ... in the new order)."
        )
    return VariantPlan(tuple(keep), mask_id, replacement_id, replacement_token, int(shift), offset, use_position_ids, tuple(notes))


def _variants_for(encoder: Encoder, tt, plan: VariantPlan) -> tuple[PositionVariant, ...]:
    cls_index, _ = special_positions(tt, encoder.info)
    out = []
    for name in plan.variants:
        ids, positions, content, slot = variant_inputs(
            tt.input_ids,
            tt.special_mask,
            cls_index,
            name,
            mask_id=plan.mask_id,
            replacement_id=plan.replacement_id,
            shift=plan.shift,
            offset=plan.offset,
        )
        tokens = tuple(encoder.tokenizer.convert_ids_to_tokens(ids.tolist()))
        out.append(PositionVariant(name, ids, positions, tokens, content, slot))
    return tuple(out)


def build_variants(encoder: Encoder, text: str, variants: Sequence[str] = POSITION_VARIANTS, shift: int = 20,
                   replacement: str = "the", max_tokens: int | None = None) -> tuple[PositionVariant, ...]:
    """The variants of ``text`` that this encoder can run (``standard`` always first)."""
    return _prepare(encoder, text, variants, shift, replacement, max_tokens)[1]


def _prepare(encoder, text, variants, shift, replacement, max_tokens) -> tuple[str, tuple[PositionVariant, ...], VariantPlan]:
    check_summary_token(encoder.info, "Moving [CLS] to another position")
    tt = tokenize(encoder, text, max_tokens)
    plan = plan_variants(encoder, variants, shift, replacement, len(tt.input_ids))
    return tt.text, _variants_for(encoder, tt, plan), plan


# --- one sentence ----------------------------------------------------------------------


def run_variant(encoder: Encoder, variant: PositionVariant, use_position_ids: bool | None = None) -> VariantRun:
    """One eager forward pass of ``variant`` (attention weights kept).

    Explicit position ids are passed when the model accepts them (``use_position_ids=None``
    checks the forward signature).
    """
    import torch

    model = encoder.eager_model
    if use_position_ids is None:
        use_position_ids = accepts_position_ids(model)
    ids = torch.as_tensor(variant.input_ids, device=encoder.device)[None, :]
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True, output_hidden_states=True)
    if use_position_ids:
        kwargs["position_ids"] = torch.as_tensor(variant.position_ids, device=encoder.device)[None, :]
    with torch.inference_mode():
        out = model(**kwargs)
        hidden = torch.stack(out.hidden_states)[:, 0].float().cpu().numpy()
        attn = torch.stack(out.attentions)[:, 0].float().cpu().numpy()
    return VariantRun(variant=variant, hidden_states=hidden, attentions=attn)


def position_table(runs: Sequence[VariantRun]) -> pd.DataFrame:
    """Tidy table of the per-layer measures; the run named ``standard`` is the reference."""
    standard = next((r for r in runs if r.variant.name == "standard"), None)
    if standard is None:
        raise ValueError("position_table needs the 'standard' run as the reference")
    ref = standard.slot_vectors()
    # How close the standard [CLS] is to an ordinary text token of the same run: in an
    # anisotropic space even unrelated vectors have a high cosine, so this is the yardstick.
    std_tokens = standard.hidden_states[:, standard.variant.content_mask]  # [L+1, n, D]
    yardstick = np.array([cosine(std_tokens[i], ref[i][None, :]).mean() for i in range(len(ref))])
    rows = []
    for r in runs:
        vecs = r.slot_vectors()
        cos_std = cosine(vecs, ref)
        cos_mean = cosine(vecs, r.content_mean())
        received = r.attention_received()
        for layer in range(len(vecs)):
            rows.append(
                {
                    "variant": r.variant.name,
                    "label": r.variant.label,
                    "layer": layer,
                    "slot": r.variant.slot,
                    "slot_token": r.variant.slot_token,
                    "seq_len": len(r.variant.input_ids),
                    "cos_to_standard_cls": float(cos_std[layer]),
                    "attention_received": float(received[block_row(layer)]) if layer > 0 else float("nan"),
                    "cos_to_mean": float(cos_mean[layer]),
                    "standard_cls_to_tokens": float(yardstick[layer]),
                }
            )
    return pd.DataFrame(rows)


@accepts_max_length
def position_experiment(encoder: Encoder, text: str, variants: Sequence[str] = POSITION_VARIANTS, shift: int = 20,
                        replacement: str = "the", max_tokens: int | None = None) -> PositionResult:
    """Run every variant of ``text`` and measure the slot vector per layer (see module doc)."""
    clean, built, plan = _prepare(encoder, text, variants, shift, replacement, max_tokens)
    runs = tuple(run_variant(encoder, v, plan.use_position_ids) for v in built)
    return PositionResult(text=clean, runs=runs, table=position_table(runs), notes=plan.notes, shift=plan.shift)


# --- plain sentences ---------------------------------------------------------------------


def summarize_position(table: pd.DataFrame, baseline=None) -> str:
    """One plain sentence on what the per-sentence numbers say, read from every layer
    (:func:`clsviz.narrative.position_summary`)."""
    return position_summary(table, baseline, VARIANT_LABELS)
