"""The model a lab run trains and the losses of one batch.

The model is a standard ``BertForPreTraining`` (masked-LM head + sentence head) when a sentence
objective is on, and a ``BertForMaskedLM`` when it is off, so the saved folder is exactly what
transformers expects of that architecture. What the variant changes is where the sentence head
reads: :func:`sentence_vectors` takes the summary token's vector (first or last position) or the
mean of the tokens (no summary token), then the model's own pooler (dense + tanh) and
``cls.seq_relationship``. For "first" this is what ``BertForPreTraining.forward`` computes; the
others are recorded in the config (``clsviz_pretraining``) and read the same way by
:func:`clsviz.load_encoder`.

The masked-LM logits are computed for the masked positions only (15% of the tokens), which saves
most of the cost of the vocabulary projection in a small model; the loss is the same.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, BertForPreTraining

from ..encoder import apply_pooler
from .config import LabConfig

__all__ = ["PretrainingLosses", "batch_outputs", "build_model", "sentence_vectors", "summary_positions"]


def build_model(config: LabConfig, tokenizer, objective: str | None, seed: int):
    """A freshly initialised BERT of ``config``'s size for ``tokenizer``'s vocabulary (seeded)."""
    bert_config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        intermediate_size=config.intermediate,
        max_position_embeddings=config.max_tokens,
        type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(int(seed))
    cls = BertForMaskedLM if objective is None else BertForPreTraining
    return cls(bert_config)


def summary_positions(attention_mask: torch.Tensor, summary: str) -> torch.Tensor | None:
    """long [B]: where the summary token sits in each right-padded row (None for ``"none"``)."""
    if summary == "first":
        return torch.zeros(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)
    if summary == "last":
        return attention_mask.long().sum(dim=1) - 1
    return None


def sentence_vectors(hidden: torch.Tensor, attention_mask: torch.Tensor, summary: str) -> torch.Tensor:
    """[B, D] from hidden states [B, T, D]: the summary token's vector, or for ``"none"`` the mean
    over every token the mask covers (specials included, as the ``mean`` pooling)."""
    positions = summary_positions(attention_mask, summary)
    if positions is not None:
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]
    w = attention_mask.to(hidden.dtype)[:, :, None]
    return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


def batch_outputs(model, summary: str, objective: str | None, input_ids, attention_mask, token_type_ids, labels,
                  next_sentence_label=None) -> dict:  # fmt: skip
    """Per-token and per-text outputs of one batch through the HF ``model``: ``mlm_loss`` float [M]
    and ``mlm_correct`` bool [M] for the M masked tokens, ``mlm_row`` long [M] (their texts), and with
    a sentence objective ``sentence_logits`` float [B, 2]."""
    out = model.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    hidden = out.last_hidden_state
    masked = labels != -100
    logits = model.cls.predictions(hidden[masked]).float()
    target = labels[masked]
    result = {
        "mlm_loss": nn.functional.cross_entropy(logits, target, reduction="none"),
        "mlm_correct": logits.argmax(dim=-1) == target,
        "mlm_row": masked.nonzero()[:, 0],
    }
    if objective is not None:
        pooled = apply_pooler(model.bert, sentence_vectors(hidden, attention_mask, summary))
        result["sentence_logits"] = model.cls.seq_relationship(pooled).float()
    return result


class PretrainingLosses(nn.Module):
    """One batch's losses for ``model`` (the HF model, a submodule, so a distributed wrapper syncs
    its gradients). ``forward`` returns a dict of tensors: ``loss`` (what is minimised),
    ``mlm_loss``, ``mlm_correct`` / ``mlm_count`` (masked tokens predicted right / masked), and with
    a sentence objective ``sentence_loss``, ``sentence_correct``, ``sentence_count``."""

    def __init__(self, model, summary: str, objective: str | None):
        super().__init__()
        self.model = model
        self.summary = summary
        self.objective = objective

    def forward(self, input_ids, attention_mask, token_type_ids, labels, next_sentence_label=None) -> dict:
        out = batch_outputs(self.model, self.summary, self.objective, input_ids, attention_mask, token_type_ids, labels)
        token_losses = out["mlm_loss"]
        mlm_loss = token_losses.mean() if token_losses.numel() else token_losses.sum()
        result = {
            "mlm_loss": mlm_loss,
            "mlm_correct": out["mlm_correct"].sum(),
            "mlm_count": torch.tensor(token_losses.numel(), device=input_ids.device),
        }
        loss = mlm_loss
        if self.objective is not None:
            sentence = out["sentence_logits"]
            sentence_loss = nn.functional.cross_entropy(sentence, next_sentence_label)
            loss = loss + sentence_loss
            result.update(
                sentence_loss=sentence_loss,
                sentence_correct=(sentence.argmax(dim=-1) == next_sentence_label).sum(),
                sentence_count=torch.tensor(next_sentence_label.numel(), device=input_ids.device),
            )
        result["loss"] = loss
        return result
