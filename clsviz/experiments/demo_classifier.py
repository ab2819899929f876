"""A demo classifier, so that the pages about a fine-tuned model show their evidence on a fresh
install: the bundled model fine-tuned on the demo corpus's ``sentiment`` labels (the label the
bundled model does not already solve, :data:`~clsviz.experiments.finetune.DEFAULT_LABEL`), through
[CLS] and its family's own classification head (pooling ``cls_head``), saved once into the models
folder and reused afterwards.

>>> from clsviz import load_encoder
>>> from clsviz.experiments.demo_classifier import demo_classifier
>>> made = demo_classifier(load_encoder())   # minutes on a CPU (make bench: demo_classifier_minutes); at once when saved
>>> made.folder                              # ~/.cache/clsviz/models/all-MiniLM-L6-v2-bundled-demo-sentiment
>>> load_encoder(str(made.folder)).info.labels
('negative', 'positive')

The folder is written through :mod:`clsviz.artifacts` (a hidden sibling renamed when complete), with
the ``clsviz.json`` note that records the SHA-256 digests of its training texts, so probes and
scores on it leave those texts out. The held-out accuracy comes with its 95% interval.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..catalog import models_dir
from ..corpus import demo_corpus
from ..encoder import Encoder
from .finetune import DEFAULT_LABEL, FinetuneResult, run_finetune
from .learners import HEAD_POOLING, SaveError

__all__ = ["DEMO_LABEL", "DEMO_SETTINGS", "DemoClassifier", "demo_classifier", "demo_classifier_folder",
           "saved_demo_classifier"]

DEMO_LABEL = DEFAULT_LABEL
"""The demo corpus label the demo classifier learns ('sentiment')."""

DEMO_SETTINGS = {"max_texts": 400, "epochs": 2}
"""How much it trains: a stratified sample of 400 demo texts (320 trained on, 80 held out), two
epochs; ``make bench`` measures the minutes it takes on the bundled model (``demo_classifier_minutes``,
target: at most 2 on a 2-core CPU)."""


def _slug(model_name: str) -> str:
    """A folder-name-safe stand-in for ``model_name``; a folder path keeps its last part and a short
    digest of the whole path, so two folders of the same name never share a demo classifier."""
    is_path = "/" in model_name or "\\" in model_name
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model_name).name if is_path else model_name).strip("-.")[:50] or "model"
    return f"{base}-{hashlib.sha256(model_name.encode('utf-8')).hexdigest()[:8]}" if is_path else base


def demo_classifier_folder(model_name: str, root=None) -> Path:
    """Where the demo classifier fine-tuned from ``model_name`` is (or would be) saved: a folder
    of ``root`` (default :func:`clsviz.catalog.models_dir`) named after the model and the label."""
    return Path(root if root is not None else models_dir()) / f"{_slug(model_name)}-demo-{DEMO_LABEL}"


def saved_demo_classifier(model_name: str, root=None) -> Path | None:
    """The saved demo classifier of ``model_name`` (a complete folder), or None when there is none yet."""
    folder = demo_classifier_folder(model_name, root)
    return folder if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file() else None


@dataclass(frozen=True, eq=False)
class DemoClassifier:
    """The demo classifier: its ``folder``, the model it was fine-tuned from, and - when this call
    trained it - the run (``run``: a :class:`~clsviz.experiments.finetune.FinetuneResult` without
    the trained weights, which are in the folder); ``reused`` when it was already saved."""

    folder: Path
    base_model: str
    label: str
    run: FinetuneResult | None
    reused: bool

    def summary(self) -> list[str]:
        """Where it is, and (when trained now) its held-out accuracy with its 95% interval."""
        where = (f"The demo classifier ({self.base_model} fine-tuned on the demo corpus's '{self.label}' labels, "
                 f"[CLS] through its own classification head) is saved in {self.folder}.")  # fmt: skip
        if self.run is None:
            return [where + " It was already there, so nothing was trained again."]
        return [where, self.run.summary()]


def demo_classifier(encoder: Encoder, *, root=None, max_texts: int = DEMO_SETTINGS["max_texts"],
                    epochs: int = DEMO_SETTINGS["epochs"], seed: int = 0, progress=None,
                    cancel=None) -> DemoClassifier:  # fmt: skip
    """The demo classifier of ``encoder``: the saved one when it exists, else fine-tuned now on the
    demo corpus's :data:`DEMO_LABEL` labels (a private copy of the weights; the shared ``encoder``
    is never changed) and saved as :func:`demo_classifier_folder`. ``progress(done, total,
    message)``; ``cancel`` stops it between steps and leaves no folder behind."""
    folder = demo_classifier_folder(encoder.name, root)
    if saved_demo_classifier(encoder.name, root) is not None:
        return DemoClassifier(folder, encoder.name, DEMO_LABEL, None, reused=True)
    corpus = demo_corpus()
    run = run_finetune(encoder, corpus.texts, corpus.labels[DEMO_LABEL], poolings=(HEAD_POOLING,), epochs=epochs, max_texts=max_texts, seed=seed, checkpoints=0,
                       label_name=DEMO_LABEL, progress=progress, cancel=cancel)  # fmt: skip
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        run.save_classifier(folder)
    except SaveError:
        if saved_demo_classifier(encoder.name, root) is None:  # not another run saving the same model first
            raise
        return DemoClassifier(folder, encoder.name, DEMO_LABEL, None, reused=True)
    return DemoClassifier(folder, encoder.name, DEMO_LABEL, replace(run, classifier=None), reused=False)
