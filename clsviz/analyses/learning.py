"""Evidence about a classifier and about training: a fine-tuned head read through every layer of
[CLS] (the Classifier page), a copy fine-tuned while [CLS] is watched at checkpoints (How does
[CLS] learn?) and the one-click demo classifier that gives a fresh install a classifier to read.

Each wraps an experiment that exists on its own (:mod:`clsviz.heads`,
:func:`clsviz.experiments.run_finetune`, :func:`clsviz.experiments.demo_classifier.demo_classifier`);
the analysis only declares it and gives its result the three ways to show itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..corpus import Corpus, is_missing
from ..encoder import Encoder
from ..experiments.demo_classifier import DEMO_LABEL, DEMO_SETTINGS, demo_classifier
from ..experiments.dynamics import summarize_moved, summarize_run
from ..experiments.finetune import (
    DEFAULT_LABEL,
    TRAINABLE_POOLINGS,
    WATCH_SETTINGS,
    FinetuneResult,
    run_finetune,
)
from ..experiments.learners import MOVED_POOLINGS
from ..figures import figure_spec
from ..heads import classifier_lens, describe_settled, lens_table, predict, settled_layer
from ..model_heads import NoClassifierError
from ..tracing import Trace
from .choices import comma_choices
from .core import Drawn, NotApplicable, Result, analysis

__all__ = ["FinetuneWatch", "parse_poolings"]

FINETUNE_FIGURES = ("finetune.curves", "dynamics.checkpoint", "dynamics.checkpoint_flow", "dynamics.steps",
                    "dynamics.moved")  # fmt: skip


@analysis("classifier.lens", title="At which layer does the prediction form in [CLS]?", inputs=("encoder", "trace"),
          figures=("classifier.lens", "classifier.mean_lens"), questions=(3,))  # fmt: skip
def classifier_lens_analysis(encoder: Encoder, trace: Trace) -> Drawn:
    """A fine-tuned classifier's own head applied to [CLS] (and to the mean of the tokens) after
    every layer: the layer from which its prediction stays the final one. Summary: the prediction,
    then the layer where it settles."""
    try:
        prediction = predict(encoder, trace)
        table = lens_table(encoder, trace)
        lens = classifier_lens(encoder, trace)
    except NoClassifierError as exc:
        raise NotApplicable(str(exc)) from None
    info = encoder.info
    settled = settled_layer(lens) if prediction.problem_type != "regression" else None
    return Drawn(
        drawings={"classifier.lens": (table, "cls", settled, info.cls_token), "classifier.mean_lens": (table, info.cls_token)},
        tidy=table,
        sentences=(f"Prediction: {prediction.summary(top=5)}",
                   describe_settled(lens, info.labels, prediction.problem_type, info.cls_token)),  # fmt: skip
        data=prediction,
    )


def parse_poolings(text: str) -> tuple[str, ...]:
    """Comma-separated trainable poolings (``"cls,mean"``) as a tuple; a ValueError naming the
    valid ones otherwise."""
    return comma_choices(text, TRAINABLE_POOLINGS, "poolings")


@dataclass(frozen=True, eq=False)
class FinetuneWatch(Result):
    """A fine-tuning run watched at checkpoints (``run``: the experiment's
    :class:`~clsviz.experiments.finetune.FinetuneResult`, trained classifier included). View:
    ``step`` (a checkpoint, default the last) for the checkpoint figures, ``layer`` and ``block``
    (default the last) for the measures across the steps."""

    run: FinetuneResult

    def table(self) -> pd.DataFrame:
        return self.run.table

    def steps(self) -> list[int]:
        """The training steps the checkpoints were measured at."""
        return sorted(int(s) for s in self.run.checkpoints["step"].unique())

    def figure_keys(self) -> tuple[str, ...]:
        keys = ["finetune.curves"]
        if len(self.run.checkpoints):
            keys += ["dynamics.checkpoint", *(["dynamics.checkpoint_flow"] if len(self.run.gradient_flow) else []),
                     "dynamics.steps"]  # fmt: skip
        if any(p in set(self.run.table["pooling"]) for p in MOVED_POOLINGS):
            keys.append("dynamics.moved")
        return tuple(keys)

    def figure(self, key: str, *, step: int | None = None, layer: int | None = None, block: int | None = None, **_):
        if key not in self.figure_keys():
            return super().figure(key)
        draw = figure_spec(key).draw
        if key in ("dynamics.checkpoint", "dynamics.checkpoint_flow"):
            return draw(self.run, self.steps()[-1] if step is None else int(step))
        if key == "dynamics.steps":
            return draw(self.run, layer, block)
        return draw(self.run)

    def figure_table(self, key: str, **view) -> pd.DataFrame:
        tables = {"finetune.curves": self.run.curves, "dynamics.checkpoint": self.run.layer_metrics,
                  "dynamics.checkpoint_flow": self.run.gradient_flow, "dynamics.steps": self.run.layer_metrics}  # fmt: skip
        return tables.get(key, self.run.table)

    def run_sentence(self) -> str:
        """What the checkpoints showed for [CLS] (:func:`~clsviz.experiments.dynamics.summarize_run`)."""
        return summarize_run(self.run)

    def moved_sentence(self) -> str:
        """Whether the moved summary tokens learn as well as [CLS] in position 0 ("" without them)."""
        return summarize_moved(self.run)

    def summary(self) -> list[str]:
        return [s for s in (self.run.summary(), self.run_sentence(), self.moved_sentence()) if s]


@analysis("finetune.watch", title="[CLS] watched while it learns", inputs=("encoder", "corpus"),
          figures=FINETUNE_FIGURES, long=True, questions=(3, 2))  # fmt: skip
def finetune_analysis(encoder: Encoder, corpus: Corpus, *, label_name: str = DEFAULT_LABEL,
                      poolings: str = ",".join(WATCH_SETTINGS["poolings"]), epochs: int = WATCH_SETTINGS["epochs"],
                      max_texts: int | None = WATCH_SETTINGS["max_texts"], checkpoints: int = WATCH_SETTINGS["checkpoints"],
                      flow_text: str = "", seed: int = 0, progress=None, cancel=None) -> FinetuneWatch:  # fmt: skip
    """A copy of the encoder fine-tuned on the corpus's ``label_name`` once per pooling (comma-separated
    ``poolings``; same seed, split, batches and budget), measured at ``checkpoints`` points on fixed
    held-out texts: held-out accuracy with its interval, probes of [CLS] and of the mean per layer,
    attention to [CLS], CKA to the start and the gradient flow of ``flow_text``. The shared encoder
    is never changed. ``max_texts`` None: every labelled text."""
    if label_name not in corpus.labels:
        raise ValueError(f"The corpus has no label column '{label_name}' (label columns: {', '.join(corpus.labels) or 'none'}).")
    labelled = [i for i, v in enumerate(corpus.labels[label_name]) if not is_missing(v)]
    run = run_finetune(encoder, [corpus.texts[i] for i in labelled], [corpus.labels[label_name][i] for i in labelled],
                       poolings=parse_poolings(poolings), epochs=epochs,
                       max_texts=max_texts if max_texts is not None and max_texts < len(labelled) else None, seed=seed,
                       checkpoints=checkpoints, flow_text=flow_text or None, label_name=label_name, progress=progress,
                       cancel=cancel)  # fmt: skip
    return FinetuneWatch(run)


@analysis("demo_classifier", title="A demo classifier, made once and kept", inputs=("encoder",),
          figures=("finetune.curves",), long=True, questions=(3,))  # fmt: skip
def demo_classifier_analysis(encoder: Encoder, *, max_texts: int = DEMO_SETTINGS["max_texts"],
                             epochs: int = DEMO_SETTINGS["epochs"], seed: int = 0, progress=None,
                             cancel=None) -> Drawn:  # fmt: skip
    """The encoder fine-tuned on the demo corpus's 'sentiment' labels through [CLS] and its own
    classification head, saved into the models folder (once: a saved one is reused), so the pages
    about a fine-tuned model have one to read. Summary: where it is and its held-out accuracy with
    its 95% interval."""
    made = demo_classifier(encoder, max_texts=max_texts, epochs=epochs, seed=seed, progress=progress, cancel=cancel)
    row = {"folder": str(made.folder), "base_model": made.base_model, "label": DEMO_LABEL, "reused": made.reused}
    if made.run is None:
        return Drawn(drawings={}, tidy=pd.DataFrame([row]), sentences=tuple(made.summary()), data=made)
    return Drawn(drawings={"finetune.curves": (made.run,)}, tidy=made.run.table.assign(**row),
                 sentences=tuple(made.summary()), data=made)  # fmt: skip
