"""Loading encoders safely: the bundled default model, hub ids and local folders.

An :class:`Encoder` holds one model loaded once and shared read-only by every caller
(the app keeps it in a process-wide cache). Two views of the same weights are kept:

* ``model`` uses the model's fast attention kernel (SDPA where supported) and is what
  corpus extraction runs;
* ``eager_model`` shares every parameter tensor with ``model`` but computes attention
  eagerly, because transformers 5.x only returns attention weights in eager mode.

A fine-tuned ``*ForSequenceClassification`` checkpoint keeps its head: ``model`` is still
the bare encoder, and ``classifier`` (a :class:`clsviz.model_heads.ClassifierHead`) holds the head's
modules over the same loaded weights. Checkpoints with another head (token classification,
question answering, multiple choice) load as plain encoders and say so in ``info.notes``.

Nothing here ever enables ``trust_remote_code``; weights are read from safetensors
files unless the caller explicitly allows pickle checkpoints.
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import local_models
from .footprint import check_config_sizes, check_footprint, check_vocabulary
from .model_heads import (
    SUPPORTED_HEADS,
    ClassifierHead,
    apply_pooler,
    build_classifier_head,
    classifier_architecture,
)
from .pretraining_heads import pretraining_layout, sentence_head
from .sources import (
    ALLOWED_MODELS_ENV,
    DEFAULT_MODEL,
    ModelLoadError,
    allowed_models,
    bundled_model_path,
    check_allowed,
    check_reachable,
    model_unavailable,
    resolve_source,
)

__all__ = [
    "ALLOWED_MODELS_ENV",
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderInfo",
    "ModelLoadError",
    "apply_pooler",
    "bundled_model_path",
    "encoder_from_model",
    "load_encoder",
    "model_unavailable",
    "allowed_models",
    "local_models",
]

# Model families whose position ids start after the padding index, so the usable
# length is max_position_embeddings - (pad_token_id + 1).
OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "mpnet", "ibert"}


@dataclass(frozen=True)
class EncoderInfo:
    """What the pages and tests need to know about a loaded encoder."""

    name: str
    source: str
    model_type: str
    num_layers: int
    num_heads: int
    hidden_size: int
    cls_token: str
    cls_token_id: int
    sep_token: str | None
    sep_token_id: int | None
    max_tokens: int
    position_embedding_type: str
    has_pooler: bool
    device: str
    # A sequence classifier's label names in id order (empty for a plain encoder) and how
    # its head reads the sequence (None without a head).
    labels: tuple[str, ...] = ()
    head_pooling: str | None = None
    # Things a person should know about how the checkpoint was loaded (a head left out, ...).
    notes: tuple[str, ...] = ()
    # A model pretrained in clsviz's lab: where its summary token sits ("first", "last", or "none":
    # no summary token, Trace.cls_index is None). None for every other model.
    summary: str | None = None

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    # Short aliases used in the issue text and notebooks.
    @property
    def layers(self) -> int:
        return self.num_layers

    @property
    def heads(self) -> int:
        return self.num_heads

    @property
    def max_length(self) -> int:
        """The old name of :attr:`max_tokens` (the longest input in tokens, specials included)."""
        return self.max_tokens

    @property
    def dims(self) -> int:
        return self.hidden_size

    def token_limit(self, max_tokens: int | None = None) -> int:
        """The longest input in tokens a run asking for ``max_tokens`` gets: the model's own
        limit, or ``max_tokens`` when that is smaller."""
        return self.max_tokens if max_tokens is None else min(int(max_tokens), self.max_tokens)


@dataclass(eq=False)
class Encoder:
    """A loaded model and tokenizer. Treat as read-only: it is shared between sessions."""

    model: object
    tokenizer: object
    info: EncoderInfo
    eager_model: object = field(repr=False)
    # Fast tokenizers are not safe to call from several threads at once when their
    # truncation/padding settings change between calls, so calls go through this lock.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The fine-tuned classification head over the same weights, or None (see clsviz.model_heads).
    classifier: ClassifierHead | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def device(self):
        import torch

        return torch.device(self.info.device)


def _pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _usable_length(config, tokenizer) -> int:
    max_pos = getattr(config, "max_position_embeddings", None) or 512
    if getattr(config, "model_type", "") in OFFSET_POSITION_MODELS:
        pad = getattr(config, "pad_token_id", None)
        max_pos -= (pad if pad is not None else 1) + 1
    tok_max = getattr(tokenizer, "model_max_length", None) or max_pos
    # Tokenizers without a limit report a huge sentinel (int(1e30)).
    return int(min(max_pos, tok_max))


def _refuse_without_cls(display: str, tokenizer) -> tuple[str, int]:
    cls_token = getattr(tokenizer, "cls_token", None)
    cls_id = getattr(tokenizer, "cls_token_id", None)
    if cls_token is None or cls_id is None:
        raise ModelLoadError(
            f"'{display}' has no [CLS]-like token (its tokenizer defines no cls_token), so there is "
            "no [CLS] vector to study. Pick an encoder such as BERT, RoBERTa, DistilBERT or ELECTRA."
        )
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    if cls_id not in probe:
        raise ModelLoadError(
            f"'{display}' defines a cls_token but its tokenizer does not add it to inputs, so the "
            "model was not trained with a [CLS] position. Pick a BERT-style encoder."
        )
    return str(cls_token), int(cls_id)


def _drop_untrained_pooler(model, missing_keys) -> None:
    """A pooler the checkpoint has no weights for is random: remove it rather than show noise."""
    if getattr(model, "pooler", None) is not None and any(k.split(".")[0] == "pooler" or ".pooler." in f".{k}" for k in missing_keys):
        model.pooler = None


def eager_view(model):
    """A second module tree over the same parameter tensors, computing attention eagerly."""
    shared = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    view = copy.deepcopy(model, shared)
    if hasattr(view, "set_attn_implementation"):
        view.set_attn_implementation("eager")
    else:  # pragma: no cover - older transformers
        view.config._attn_implementation = "eager"
    return view


def _load_config(display: str, source: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False)
    except ValueError as exc:
        msg = str(exc)
        if "trust_remote_code" in msg or "custom code" in msg:
            raise ModelLoadError(
                f"'{display}' needs to run its own Python code (trust_remote_code), which clsviz "
                "never allows. Pick a model supported by transformers itself."
            ) from exc
        raise ModelLoadError(f"'{display}' has a configuration clsviz cannot read: {msg}") from exc
    except OSError as exc:
        if Path(source).is_dir():  # the folder and its config.json exist: the file is what is wrong
            raise ModelLoadError(
                f"'{display}' has a config.json clsviz cannot read ({str(exc).splitlines()[0]}). Replace it with "
                "the config.json that save_pretrained() wrote for this model."
            ) from exc
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise ModelLoadError(
                f"'{display}' is not in the local model cache and downloads are off "
                "(HF_HUB_OFFLINE=1). Use the bundled default or a local folder."
            ) from exc
        raise ModelLoadError(
            f"Could not find a model called '{display}': {str(exc).splitlines()[0]} "
            "Check the spelling of the id, or give the path of a local folder."
        ) from exc


def _load_tokenizer(display: str, source: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except Exception as exc:
        raise ModelLoadError(
            f"'{display}' has no tokenizer clsviz can load ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})."
        ) from exc


def _load_weights(display: str, source: str, config, with_head: bool, allow_pickle: bool, pretraining: bool = False):
    """(model, loading_info): SDPA where the family has it (eager otherwise), safetensors only
    unless ``allow_pickle``; the ``*ForSequenceClassification`` model when ``with_head``, the
    ``*ForPreTraining`` model when ``pretraining`` (a lab model with a sentence head)."""
    from transformers import AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification

    auto_class = AutoModelForSequenceClassification if with_head else AutoModel
    if pretraining:
        auto_class = AutoModelForPreTraining

    def weights(attn_implementation: str):
        return auto_class.from_pretrained(
            source,
            config=config,
            trust_remote_code=False,
            use_safetensors=None if allow_pickle else True,
            attn_implementation=attn_implementation,
            output_loading_info=True,
        )

    try:
        return weights("sdpa")
    except (ValueError, ImportError):
        # Some architectures have no SDPA kernel; eager is always available.
        try:
            return weights("eager")
        except Exception as exc:
            raise ModelLoadError(f"'{display}' could not be loaded: {exc}") from exc
    except OSError as exc:
        if not allow_pickle and "safetensors" in str(exc).lower():
            raise ModelLoadError(
                f"'{display}' only has pickle weights (pytorch_model.bin), which can run arbitrary "
                "code when loaded. clsviz loads safetensors only; call "
                "load_encoder(..., allow_pickle=True) if you trust this model."
            ) from exc
        raise ModelLoadError(f"'{display}' has no weights clsviz can load: {exc}") from exc


def _encoder_info(display: str, source: str, model, tokenizer, cls: tuple[str, int], classifier, notes, dev,
                  summary: str | None = None) -> EncoderInfo:
    import torch

    sep_token = getattr(tokenizer, "sep_token", None) or getattr(tokenizer, "eos_token", None)
    sep_id = tokenizer.convert_tokens_to_ids(sep_token) if sep_token is not None else None
    cfg = model.config
    return EncoderInfo(
        name=display,
        source=source,
        model_type=str(getattr(cfg, "model_type", "unknown")),
        num_layers=int(getattr(cfg, "num_hidden_layers", None) or cfg.n_layers),
        num_heads=int(getattr(cfg, "num_attention_heads", None) or cfg.n_heads),
        hidden_size=int(getattr(cfg, "hidden_size", None) or cfg.dim),
        cls_token=cls[0],
        cls_token_id=cls[1],
        sep_token=sep_token,
        sep_token_id=int(sep_id) if sep_id is not None else None,
        max_tokens=_usable_length(cfg, tokenizer),
        position_embedding_type=str(
            getattr(cfg, "position_embedding_type", None)
            or ("sinusoidal" if getattr(cfg, "sinusoidal_pos_embds", False) else "absolute")
        ),
        has_pooler=getattr(model, "pooler", None) is not None,
        device=str(torch.device(dev)),
        labels=() if classifier is None else classifier.labels,
        head_pooling=None if classifier is None else classifier.pooling,
        notes=notes,
        summary=summary,
    )


def encoder_from_model(model, tokenizer, name: str, *, source: str = "", summary: str | None = None) -> Encoder:
    """An :class:`Encoder` over an encoder module already in memory (eval mode; its parameters are
    shared, not copied), e.g. a model being trained: ``name`` is shown, ``summary`` is a lab
    layout (see :attr:`EncoderInfo.summary`). The caller keeps the weights unchanged while it is used."""
    model.eval()
    if summary == "none":
        cls = (str(tokenizer.cls_token), int(tokenizer.cls_token_id))
    else:
        cls = _refuse_without_cls(name, tokenizer)
    dev = str(next(model.parameters()).device)
    info = _encoder_info(name, source or name, model, tokenizer, cls, None, (), dev, summary)
    return Encoder(model=model, tokenizer=tokenizer, info=info, eager_model=eager_view(model))


def load_encoder(
    name: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    allow_pickle: bool = False,
    max_gb: float | None = None,
) -> Encoder:
    """Load an encoder: the bundled default (``None``), a hub id, or a local folder.

    Raises :class:`ModelLoadError` with an actionable message when the model cannot be
    used: not on the deployment's allow-list, unknown id, no network and not cached, remote
    code required, a folder clsviz started saving and never finished, a config that describes
    no real model, a model whose weights would take more than ``max_gb`` GB (default: the
    ``CLSVIZ_MODEL_MAX_GB`` setting, 3; see :mod:`clsviz.footprint`) - refused from its config
    and weight-file headers before any weight is read -, a damaged weight file, a tokenizer
    whose ids run past the model's embeddings, pickle-only weights (unless
    ``allow_pickle=True``), or no [CLS]-like token.
    """
    display, source = resolve_source(name)
    check_allowed(display)
    check_reachable(display, source)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    config = _load_config(display, source)
    check_config_sizes(display, config)
    check_footprint(display, config, source, max_gb)
    tokenizer = _load_tokenizer(display, source)
    check_vocabulary(display, config, tokenizer)
    head_architecture, notes = classifier_architecture(config)
    try:
        layout = pretraining_layout(config)
    except ValueError as exc:
        raise ModelLoadError(f"'{display}': {exc}") from exc
    summary = None if layout is None else layout["summary"]
    pretraining = layout is not None and layout.get("sentence_objective") is not None
    try:
        if summary == "none":  # a lab model pretrained without a summary token: nothing to refuse
            cls = (str(tokenizer.cls_token), int(tokenizer.cls_token_id))
        else:
            cls = _refuse_without_cls(display, tokenizer)
    except ModelLoadError as exc:
        if head_architecture is None:
            raise
        raise ModelLoadError(
            f"{exc} (Its head, {head_architecture}, would need a [CLS]-like first token too: clsviz "
            f"reads {SUPPORTED_HEADS}.)"
        ) from exc

    dev = _pick_device(device)
    loaded, loading_info = _load_weights(display, source, config, head_architecture is not None, allow_pickle, pretraining)
    missing_keys = loading_info.get("missing_keys", ())
    loaded.eval()
    loaded.to(dev)
    for p in loaded.parameters():
        p.requires_grad_(False)
    # A classifier's bare encoder is a submodule of it, so both share every weight tensor.
    model = loaded if head_architecture is None and not pretraining else loaded.base_model
    classifier = None
    if head_architecture is not None:
        classifier, head_notes = build_classifier_head(loaded, model, tokenizer, missing_keys)
        notes += head_notes
    elif pretraining:
        classifier, head_notes = sentence_head(loaded, model, layout, missing_keys)
        notes += head_notes
    _drop_untrained_pooler(model, missing_keys)
    eager = eager_view(model)
    eager.eval()
    info = _encoder_info(display, source, model, tokenizer, cls, classifier, notes, dev, summary)
    return Encoder(model=model, tokenizer=tokenizer, info=info, eager_model=eager, classifier=classifier)
