"""One-line live findings for the Overview page: a first answer to each of the four questions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .attention import cls_entropy
from .metrics import cosine
from .tracing import Trace

__all__ = ["Finding", "findings"]


@dataclass(frozen=True)
class Finding:
    """A question, a one-line answer for one Trace, and the number behind it."""

    key: str
    question: str
    answer: str
    value: float


def findings(trace: Trace) -> list[Finding]:
    """Four findings for one Trace: aggregate? why first? how does it learn? recoverable?"""
    content = trace.content_mask
    cls_i = trace.cls_index
    last = trace.num_layers
    mean_first = trace.hidden(0)[content].mean(axis=0)
    mean_last = trace.hidden(last)[content].mean(axis=0)
    agg_first = float(cosine(trace.cls(0), mean_first))
    agg_last = float(cosine(trace.cls(last), mean_last))

    # Attention each token receives in the last layer (mean over heads and queries).
    received = trace.attentions[-1].mean(axis=(0, 1))
    uniform = 1.0 / trace.seq_len
    cls_share = float(received[cls_i])

    ent = cls_entropy(trace.attentions, cls_i).mean(axis=1)  # [L]
    max_ent = float(np.log(trace.seq_len))

    sims = cosine(trace.hidden(last), trace.cls(last)[None, :])
    best_i = int(np.flatnonzero(content)[np.argmax(sims[content])])
    best_sim = float(sims[best_i])

    return [
        Finding(
            "aggregate",
            "Is [CLS] an aggregate of the sentence?",
            f"Cosine between [CLS] and the mean of the sentence's tokens goes from {agg_first:.2f} "
            f"(embeddings) to {agg_last:.2f} (layer {last}). Compare it with the anisotropy "
            "baseline on the Similarity page before reading much into it.",
            agg_last,
        ),
        Finding(
            "first",
            "Why is it first — would another token do?",
            f"In layer {last}, [CLS] receives {cls_share:.1%} of all attention "
            f"(a uniform share would be {uniform:.1%}). Nothing in bidirectional attention "
            "favours position 0; only the learned embeddings do.",
            cls_share,
        ),
        Finding(
            "learn",
            "How does [CLS] come to represent the sentence?",
            f"The entropy of [CLS]'s attention row is {ent[0]:.2f} in layer 1 and {ent[-1]:.2f} in "
            f"layer {last} (a perfectly broad row would be {max_ent:.2f}): "
            + ("it reads more broadly as layers go up." if ent[-1] > ent[0] else "it focuses as layers go up."),
            float(ent[-1]),
        ),
        Finding(
            "recover",
            "Can the sentence be recovered from the [CLS] vector?",
            f"At layer {last} the token closest to [CLS] is '{trace.tokens[best_i]}' "
            f"(cosine {best_sim:.2f}); decoding whole sentences is tested on the inversion page.",
            best_sim,
        ),
    ]
