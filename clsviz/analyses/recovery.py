"""What one sentence vector holds, read with trained readers: the tuned lens ("when is the sentence
vector decided?"), the inversion ladder (how much of a held-out sentence each layer's [CLS], mean
and max give back) and a pair of inverters trained on a corpus that recover a typed sentence
from its [CLS] and from its mean.

All three train on a corpus, so they are long (background jobs in the app); their results hold
no encoder (the inverters keep their weights as arrays), so they travel back from a worker
process and are shared read-only between visitors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..encoder import Encoder
from ..experiments.inverter import InverterState, TrainingTexts, check_steps, fit_inverter, torch_threads
from ..experiments.ladder import PUBLISHED, LadderLayers, inversion_ladder, ladder_plan
from ..experiments.lens import LensTarget, compare_lens
from ..heads import NoClassifierError
from ..layers import check_layer
from .core import Drawn, NotApplicable, Result, analysis

__all__ = ["InverterPair", "LENS_POOLINGS"]

LensPoolings = Literal["cls+mean", "cls", "mean", "max"]
LENS_POOLINGS = {"cls+mean": ("cls", "mean"), "cls": ("cls",), "mean": ("mean",), "max": ("max",)}


@analysis("lens.tuned", title="When is the sentence vector decided? (tuned lens)", inputs=("encoder", "texts"),
          figures=("lens.tuned",), long=True, questions=(1, 3))  # fmt: skip
def lens_analysis(encoder: Encoder, texts: Sequence[str], *, pooling: LensPoolings = "cls+mean",
                  target: LensTarget = "final", held_out: float = 0.2, seed: int = 0, progress=None,
                  cancel=None) -> Drawn:
    """Each layer's sentence vector read as it is and through an affine map fitted to the last layer
    (the tuned lens of Belrose et al. 2023, for encoders), scored on held-out texts: the layer from
    which the final vector - or, with target logits, a classifier's prediction - can be read."""
    try:
        result = compare_lens(encoder, texts, LENS_POOLINGS[pooling], target, seed, held_out, progress=progress,
                              cancel=cancel)
    except NoClassifierError as exc:
        raise NotApplicable(str(exc)) from exc
    return Drawn(drawings={"lens.tuned": (result.table, target)}, tidy=result.table,
                 sentences=tuple(result.summary()), data=result)


@analysis("inversion.ladder", title="The inversion ladder: a held-out sentence from one vector",
          inputs=("encoder", "texts"), figures=("inversion.ladder",), long=True, questions=(4,),
          precheck=ladder_plan)  # fmt: skip
def ladder_analysis(encoder: Encoder, texts: Sequence[str], *, layers: LadderLayers = "all", steps: int = 600,
                    corrections: int = 0, held_out: float = 0.2, max_texts: int = 2000, seed: int = 0,
                    progress=None, cancel=None) -> Drawn:
    """An inverter trained per layer for [CLS], the mean and max on part of a corpus, scored on the
    rest (token F1, BLEU, exact match with intervals) beside nearest-sentence retrieval, the linear
    bag-of-words decoder and vec2text's published figures."""
    result = inversion_ladder(encoder, texts, layers=layers, steps=steps, corrections=corrections,
                              held_out=held_out, max_texts=max_texts, seed=seed, progress=progress, cancel=cancel)
    return Drawn(drawings={"inversion.ladder": (result.table, PUBLISHED)}, tidy=result.table,
                 sentences=tuple(result.summary()), data=result)


@dataclass(frozen=True, eq=False)
class InverterPair(Result):
    """Inverters of one layer's [CLS] and mean, trained on a corpus (``states``: pooling ->
    :class:`clsviz.experiments.inverter.InverterState`). ``recover(encoder, texts)`` writes back
    typed sentences; ``table()`` is the training loss per step."""

    states: dict[str, InverterState]
    layer: int
    n_texts: int
    model_name: str

    def table(self) -> pd.DataFrame:
        return pd.concat([s.history.assign(pooling=p, layer=self.layer) for p, s in self.states.items()],
                         ignore_index=True)

    def recover(self, encoder: Encoder, texts: Sequence[str], corrections: int = 0) -> pd.DataFrame:
        """Each text recovered from its vector by each inverter: columns text, pooling, layer,
        reference, output, token_f1, bleu, exact, cosine (one row per text and pooling)."""
        texts = [str(t) for t in texts if str(t).strip()]
        if not texts:
            raise ValueError("Type a sentence to recover.")
        frames = []
        with torch_threads(1):
            for pooling, state in self.states.items():
                steps = corrections if state.correction else 0
                frame = state.attach(encoder).evaluate(texts, corrections=steps)
                frames.append(frame.assign(pooling=pooling, layer=self.layer))
        out = pd.concat(frames, ignore_index=True)
        return out[["text", "pooling", "layer", "reference", "output", "token_f1", "bleu", "exact", "cosine"]]

    def summary(self) -> list[str]:
        steps = ", ".join(f"{p} {int(s.history['step'].max()) + 1}" for p, s in self.states.items())
        return [f"Inverters of layer {self.layer} trained on {self.n_texts} corpus texts of {self.model_name} "
                f"(steps run: {steps}); sentences outside the corpus are recovered as far as its word pieces allow."]


def _inverter_texts(encoder: Encoder, texts: Sequence[str], *, layer: int = -1, steps: int = 600,
                    max_texts: int = 2000, seed: int = 0, **_) -> list[str]:
    """The texts the inverters train on (de-duplicated, at most ``max_texts``), every setting checked
    first: also the quick check the app runs before it queues the training."""
    try:
        check_layer(layer, encoder.info.num_layers)
    except IndexError as exc:  # a precheck says no with a ValueError (the page shows it)
        raise ValueError(str(exc)) from None
    check_steps(steps)
    unique = list(dict.fromkeys(str(t) for t in texts if str(t).strip()))
    if len(unique) < 2:
        raise ValueError("The inverters need at least two different sentences to train on.")
    if len(unique) > max_texts:
        rng = np.random.default_rng(seed)
        unique = [unique[i] for i in sorted(rng.choice(len(unique), size=int(max_texts), replace=False))]
    return unique


@analysis("inversion.inverter", title="Recover a typed sentence from its [CLS] and from its mean",
          inputs=("encoder", "texts"), long=True, questions=(4,), precheck=_inverter_texts)  # fmt: skip
def inverter_analysis(encoder: Encoder, texts: Sequence[str], *, layer: int = -1, steps: int = 600,
                      correction: bool = True, max_texts: int = 2000, seed: int = 0, progress=None,
                      cancel=None) -> InverterPair:
    """Two inverters trained on a corpus at one layer - one reading [CLS], one the mean of the
    tokens - that write back any sentence from its vector (correction steps optional)."""
    unique = _inverter_texts(encoder, texts, layer=layer, steps=steps, max_texts=max_texts, seed=seed)
    layer = check_layer(layer, encoder.info.num_layers)
    poolings = ("cls", "mean")
    data = TrainingTexts.build(encoder, unique, poolings, correction=correction, seed=seed, cancel=cancel)
    states = {}
    for i, pooling in enumerate(poolings):

        def step(done, total, message, i=i, pooling=pooling):
            if progress is not None:
                progress(i * total + done, 2 * total, f"{pooling}: {message}")

        with torch_threads(1):
            states[pooling] = fit_inverter(encoder, data, layer, pooling, steps, seed, step, cancel).state()
    return InverterPair(states, layer, len(unique), encoder.name)
