"""Cached results and background jobs for the "What flows into [CLS]?" page.

Fast measures (raw attention, value norms, GlobEnc, ALTI) and attributions of short texts are
computed on the page through the shared cache; value zeroing and the faithfulness scoreboard
run as background jobs (:mod:`ui.jobs`) whose results join the same cache when they finish.
"""

from __future__ import annotations

from clsviz import Trace
from clsviz.attribution import attribute
from clsviz.faithfulness import rank_measures
from clsviz.mixing import ContextMixing, measure

from . import jobs
from .cache import cached, shared_cache
from .state import cached_encoder

__all__ = [
    "SCOREBOARD_JOB",
    "VALUE_ZEROING_JOB",
    "attributions",
    "job_status",
    "mixing_result",
    "start_scoreboard",
    "start_value_zeroing",
    "stored_mixing",
]

VALUE_ZEROING_JOB = "mixing.value_zeroing"
SCOREBOARD_JOB = "mixing.scoreboard"


_NAMESPACE = "mixing"


def _key(trace: Trace, max_tokens: int, method: str) -> tuple:
    return (trace.model_name, trace.text, int(max_tokens), method)


def mixing_result(trace: Trace, max_tokens: int, method: str) -> ContextMixing:
    """The ContextMixing of a cached trace (computed once per model, text, max tokens, method)."""
    return cached(_NAMESPACE, _key(trace, max_tokens, method), lambda: measure(cached_encoder(trace.model_name), trace, method))


def stored_mixing(trace: Trace, max_tokens: int, method: str) -> ContextMixing | None:
    """A result a background job already put in the cache, or None."""
    return shared_cache().get((_NAMESPACE, *_key(trace, max_tokens, method)))


def _measure_and_keep(encoder, trace: Trace, max_tokens: int, method: str, progress=None, cancel=None):
    result = measure(encoder, trace, method, progress=progress, cancel=cancel)
    shared_cache().put((_NAMESPACE, *_key(trace, max_tokens, method)), result)
    return result


def start_value_zeroing(encoder, trace: Trace, max_tokens: int) -> jobs.Job | None:
    """Value zeroing of ``trace`` as this session's background job."""
    return jobs.launch(VALUE_ZEROING_JOB, _measure_and_keep, encoder, trace, int(max_tokens), "value_zeroing")


def attributions(trace: Trace, max_tokens: int, poolings: tuple[str, ...], **options) -> list:
    """One Attribution per pooling on the same target (cached per model, text and options)."""
    key = (trace.model_name, trace.text, int(max_tokens), poolings, tuple(sorted(options.items())))

    def compute():
        encoder = cached_encoder(trace.model_name)
        return [attribute(encoder, trace.text, pooling=p, max_length=trace.seq_len, **options) for p in poolings]

    return cached("attribution", key, compute)


def start_scoreboard(encoder, traces: list[Trace], **options) -> jobs.Job | None:
    """The faithfulness scoreboard of ``traces`` as this session's background job."""
    return jobs.launch(SCOREBOARD_JOB, rank_measures, encoder, list(traces), **options)


def job_status(key: str, what: str) -> jobs.Job | None:
    """This session's job ``key`` drawn by :func:`ui.jobs.panel` (its place in the queue or its
    progress with Cancel, or why it ended without a result); returns the job (None when none)."""
    jobs.panel(key, what)
    return jobs.get(key)
