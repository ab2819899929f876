"""The heads a checkpoint carries, rebuilt over its loaded weights (foundation: imports no other
clsviz module but :mod:`clsviz.sources`' neighbours).

A fine-tuned ``*ForSequenceClassification`` model turns the last layer's [CLS]-like vector into
logits with a small head; :class:`ClassifierHead` replays exactly that computation from any
[N, D] batch of vectors. :func:`clsviz.load_encoder` builds it here when it loads a checkpoint;
reading it through the layers (the lens) lives one floor up, in :mod:`clsviz.heads`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "HEAD_KINDS",
    "SUPPORTED_HEADS",
    "ClassifierHead",
    "NoClassifierError",
    "apply_pooler",
    "build_classifier_head",
    "classifier_architecture",
]


def apply_pooler(model, cls_vectors):
    """The model's pooler head on [N, D] [CLS] vectors -> [N, D] (torch), or None without one.

    BERT-style poolers read position 0 of a sequence; ALBERT keeps a bare Linear plus a
    separate activation. Both are handled so every layer's [CLS] can be pooled.
    """
    pooler = getattr(model, "pooler", None)
    if pooler is None:
        return None
    activation = getattr(model, "pooler_activation", None)
    if activation is not None:
        return activation(pooler(cls_vectors))
    return pooler(cls_vectors[:, None, :])


HEAD_KINDS = ("pooler", "head_module", "pre_classifier", "context_pooler")
"""How a head turns the [CLS] vector into logits: the encoder's pooler then ``classifier``
(BERT, ALBERT); the ``classifier`` module itself (RoBERTa-style heads that take the first
token); ``pre_classifier`` + ReLU then ``classifier`` (DistilBERT); the model's own context
pooler then ``classifier`` (DeBERTa)."""



SUPPORTED_HEADS = (
    "sequence-classification heads (*ForSequenceClassification) that read the [CLS]-like first "
    "token: BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA, ALBERT, DeBERTa-v2, MPNet and their kin"
)
"""The heads :func:`clsviz.load_encoder` keeps as ``Encoder.classifier`` (said in messages)."""

# Heads clsviz does not read, by class-name suffix: such checkpoints load as plain encoders.
_OTHER_HEADS = {
    "ForTokenClassification": "token classification (a label per token)",
    "ForQuestionAnswering": "question answering (answer spans)",
    "ForMultipleChoice": "multiple choice",
}


def classifier_architecture(config) -> tuple[str | None, tuple[str, ...]]:
    """The sequence-classification class named in ``config.architectures`` (or None), and notes
    on a head that will be left out."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    architectures = [str(a) for a in (getattr(config, "architectures", None) or ())]
    for arch in architectures:
        if arch.endswith("ForSequenceClassification"):
            if type(config) in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
                return arch, ()
            return None, (
                f"The checkpoint names a classifier ({arch}) that transformers cannot build for "
                f"model type '{config.model_type}', so only its encoder was loaded.",
            )
    for arch in architectures:
        for suffix, what in _OTHER_HEADS.items():
            if arch.endswith(suffix):
                return None, (
                    f"This checkpoint's head ({arch}) is for {what}. clsviz reads {SUPPORTED_HEADS}; "
                    "it loaded the encoder without that head, so the classifier views are not available.",
                )
    return None, ()


# The head's logits must match the full model's to this tolerance on a probe input, or the
# head is not offered (a family whose head reads something other than the first token).
_CHECK_RTOL, _CHECK_ATOL = 1e-3, 1e-4


class NoClassifierError(ValueError):
    """The encoder has no classification head to read."""


@dataclass(frozen=True, eq=False)
class ClassifierHead:
    """A classifier's head over the loaded weights (eval mode, frozen). Read-only and shared.

    ``kind`` is one of :data:`HEAD_KINDS`; ``labels`` are the label names in id order;
    ``pooling`` says in words how the head reads the sequence; ``problem_type`` is the
    config's ("single_label_classification", "multi_label_classification", "regression").
    """

    kind: str
    labels: tuple[str, ...]
    pooling: str
    problem_type: str
    classifier: object
    first: object = None  # the step before ``classifier``: the encoder (pooler) or a module

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def logits(self, cls_vectors):
        """torch float [N, num_labels] from torch [N, D] [CLS]-like vectors, exactly as the
        model's forward computes them from its last hidden state (dropout is off in eval)."""
        import torch

        with torch.inference_mode():
            return self.apply(cls_vectors)

    def apply(self, cls_vectors):
        """The same computation as :meth:`logits`, differentiable: torch [N, D] -> [N, num_labels]
        (autograd follows ``cls_vectors``; the head's own weights are frozen)."""
        import torch

        weight = next(self.classifier.parameters())
        x = torch.as_tensor(cls_vectors).to(device=weight.device, dtype=weight.dtype)
        if x.ndim != 2:
            raise ValueError(f"cls_vectors: expected [N, D], got {list(x.shape)}")
        if self.kind == "pooler":
            x = apply_pooler(self.first, x)
        elif self.kind == "pre_classifier":
            x = torch.relu(self.first(x))
        elif self.kind == "context_pooler":
            x = self.first(x[:, None, :])
        elif self.kind == "head_module":
            return self.classifier(x[:, None, :])
        return self.classifier(x)


def _problem_type(config) -> str:
    declared = getattr(config, "problem_type", None)
    if declared:
        return str(declared)
    return "regression" if int(config.num_labels) == 1 else "single_label_classification"


def _activation_name(module) -> str:
    name = type(module).__name__.lower().replace("activation", "")
    return name or "activation"


def _recipe(full, base, cls_token: str):
    """(kind, first, classifier, description) for the head of ``full``, or None when unknown."""
    import torch

    classifier = getattr(full, "classifier", None)
    if classifier is None:
        return None
    linear = isinstance(classifier, torch.nn.Linear)
    if linear and isinstance(getattr(full, "pre_classifier", None), torch.nn.Linear):
        return "pre_classifier", full.pre_classifier, classifier, f"{cls_token} → pre_classifier (dense + ReLU) → classifier"
    context = getattr(full, "pooler", None)
    if linear and context is not None and context is not getattr(base, "pooler", None):
        act = getattr(getattr(context, "config", None), "pooler_hidden_act", "gelu")
        return "context_pooler", context, classifier, f"{cls_token} → context pooler (dense + {act}) → classifier"
    if linear and getattr(base, "pooler", None) is not None:
        return "pooler", base, classifier, f"{cls_token} → pooler (dense + tanh) → classifier"
    if hasattr(classifier, "out_proj") and hasattr(classifier, "dense"):
        act = getattr(classifier, "activation", None)
        act = "tanh" if act is None else _activation_name(act)
        return "head_module", None, classifier, f"{cls_token} → dense + {act} → out_proj"
    return None


def build_classifier_head(full, base, tokenizer, missing_keys: Sequence[str] = ()):
    """The head of a loaded ``*ForSequenceClassification`` model ``full`` (whose encoder is
    ``base``), checked against the model's own logits on a probe input.

    Returns ``(head or None, notes)``: None, with a note saying why, when the checkpoint has no
    trained head weights, the head is of an unknown shape, or it does not read the first token.
    """
    import torch

    arch = type(full).__name__
    prefix = getattr(full, "base_model_prefix", "")
    untrained = [k for k in missing_keys if not k.startswith(prefix + ".")]
    if untrained or any(".pooler." in f".{k}" for k in missing_keys):
        shown = ", ".join(sorted(missing_keys)[:4])
        return None, (
            f"The checkpoint names a classifier ({arch}) but has no trained weights for its head "
            f"({shown}): it was never fine-tuned, so only its encoder was loaded.",
        )
    cls_token = str(tokenizer.cls_token)
    recipe = _recipe(full, base, cls_token)
    if recipe is None:
        return None, (
            f"clsviz cannot replay the head of {arch}; it reads {SUPPORTED_HEADS}. Only the encoder was loaded.",
        )
    kind, first, classifier, pooling = recipe
    config = full.config
    labels = tuple(str(config.id2label.get(i, f"LABEL_{i}")) for i in range(int(config.num_labels)))
    head = ClassifierHead(kind, labels, pooling, _problem_type(config), classifier, first)

    # Replay the head on a probe text and compare with the model's own forward pass.
    device = next(full.parameters()).device
    ids = torch.as_tensor(tokenizer("a cat", add_special_tokens=True)["input_ids"], device=device)[None]
    if int(ids[0, 0]) != tokenizer.cls_token_id:
        return None, (
            f"The tokenizer does not put {cls_token} first, but the head of {arch} reads the first "
            "token, so the head is not offered.",
        )
    with torch.inference_mode():
        out = full(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
        mine = head.logits(out.hidden_states[-1][:, 0, :])
    if mine.shape != out.logits.shape or not torch.allclose(mine, out.logits, rtol=_CHECK_RTOL, atol=_CHECK_ATOL):
        return None, (
            f"clsviz could not reproduce the logits of {arch} from its first token's vector, so the "
            f"head is not offered; clsviz reads {SUPPORTED_HEADS}.",
        )
    return head, ()
