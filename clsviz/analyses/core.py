"""The analysis layer's machinery: declarations, their parameters, results and one entry point.

An analysis is one piece of evidence, declared once with :func:`analysis` on the function that
computes it::

    @analysis("attention", title="Attention around [CLS]", inputs=("trace",),
              figures=("attention.to_cls", "attention.entropy"), report=True, questions=(1, 3))
    def attention_analysis(trace, *, method: Literal["attention", "value_norm"] = "attention",
                           include_self: bool = True) -> AttentionResult: ...

* **inputs** are the function's positional parameters, named by role (:data:`INPUT_ROLES`): the
  ``encoder``, one ``trace`` or several ``traces``, ``texts``, a ``corpus``, ``vectors``
  (:class:`clsviz.PooledVectors`), scored ``pairs`` (a table with sentence1, sentence2, score), a
  ``second`` encoder, or the anisotropy ``baseline``; roles in
  ``optional`` may be None.
* **precheck** (optional) is a quick look at the inputs and the checked parameters (a few label
  counts, never a model run) that raises ``ValueError`` or :class:`NotApplicable` for a run that
  could only fail: the app's runner calls it before it queues a long analysis, so a person reads
  the reason at once instead of a failed job.
* **parameters** are its keyword-only parameters with a default and a ``Literal``, ``bool``,
  ``int``, ``float`` or ``str`` annotation. They become the CLI's ``--name value`` flags, the
  checked values of the app's widgets and part of every cache key; a value outside a ``Literal``
  is refused with a message that lists the valid ones. ``progress`` and ``cancel`` keywords, when
  the function has them, receive the job's callbacks (a long analysis runs as a background job
  in the app).
* **figures** are the registry keys (:mod:`clsviz.figures.registry`) its result can draw.

The function returns a :class:`Result`: data that shows itself as a tidy ``table()`` (the CSV),
``figures()`` (registry key -> ``plotly`` figure) and ``summary()`` (plain sentences, with their
intervals). The app's runner (``ui.runner``), the command line (``clsviz run``) and the HTML report
(:mod:`clsviz.report`) all read these results; none of them recomputes the evidence its own way.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
import types
import typing
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args, get_origin

import numpy as np
import pandas as pd

from ..figures import figure_spec

__all__ = [
    "ANALYSES",
    "INPUT_ROLES",
    "Analysis",
    "Drawn",
    "InputRole",
    "NotApplicable",
    "Param",
    "ParamError",
    "Result",
    "analysis",
    "digest",
    "get",
    "names",
    "run",
]

InputRole = Literal["encoder", "trace", "traces", "texts", "corpus", "vectors", "pairs", "second", "baseline"]
INPUT_ROLES: tuple[str, ...] = get_args(InputRole)
"""What an analysis can take as input, in the order a caller usually has them."""

_CALLBACKS = ("progress", "cancel")


class ParamError(ValueError):
    """A parameter value an analysis does not accept; the message lists what it does accept."""


class NotApplicable(Exception):
    """The evidence does not apply to this model or input (a model without a masked-LM head, a
    family whose blocks clsviz cannot run, a text too long for an expensive measure); the message
    says why and what would make it apply. Pages show it as a note, the report as a section note."""


class Result:
    """What an analysis returns: its data, and the three ways it shows itself.

    Subclasses are frozen dataclasses holding arrays, tables and small values (picklable, so a
    result can come back from a worker process, and treated as read-only once made: the app
    shares one between visitors). They implement :meth:`table`, and :meth:`figure` with
    :meth:`figure_keys` when they draw; :meth:`figures` and :meth:`figure_table` follow.
    """

    def table(self) -> pd.DataFrame:
        """The numbers, tidy (one row per observation): what the CSV download and ``--out`` write."""
        raise NotImplementedError(f"{type(self).__name__} has no table")

    def figure_keys(self) -> tuple[str, ...]:
        """The registry keys this result can draw, in reading order."""
        return ()

    def figure(self, key: str, **view) -> object:
        """The ``plotly`` figure ``key`` (one of :meth:`figure_keys`). ``view`` holds what a person
        changes without recomputing anything (a block, a head): each result documents its own."""
        raise KeyError(f"{type(self).__name__} draws no figure {key!r}; it draws {', '.join(self.figure_keys()) or 'none'}")

    def figures(self, **view) -> dict[str, object]:
        """Every figure: registry key -> ``plotly.graph_objects.Figure``."""
        return {key: self.figure(key, **view) for key in self.figure_keys()}

    def figure_table(self, key: str, **view) -> pd.DataFrame:
        """The numbers behind figure ``key`` (its CSV); the whole :meth:`table` unless a result
        has a closer one."""
        return self.table()

    def summary(self) -> list[str]:
        """Plain sentences saying what the numbers show, each quoting its interval where it
        compares two things."""
        return []


@dataclass(frozen=True, eq=False)
class Drawn(Result):
    """A result whose figures are registered drawing functions applied to stored arguments:
    ``drawings`` maps a registry key to the arguments of its ``draw`` function; ``tidy`` is the
    table; ``tables`` holds a closer table per figure key where there is one; ``sentences`` the
    summary; ``data`` the experiment's own result object for callers who want more."""

    drawings: dict
    tidy: pd.DataFrame
    tables: dict = field(default_factory=dict)
    sentences: tuple[str, ...] = ()
    data: object = None

    def table(self) -> pd.DataFrame:
        return self.tidy

    def figure_keys(self) -> tuple[str, ...]:
        return tuple(self.drawings)

    def figure(self, key: str, **view):
        if key not in self.drawings:
            return super().figure(key)
        return figure_spec(key).draw(*self.drawings[key])

    def figure_table(self, key: str, **view) -> pd.DataFrame:
        return self.tables.get(key, self.tidy)

    def summary(self) -> list[str]:
        return list(self.sentences)


@dataclass(frozen=True)
class Param:
    """One keyword parameter of an analysis: its ``name``, the ``kind`` of value (bool, int,
    float, str), the ``choices`` a ``Literal`` allows (None for any value of the kind) and the
    ``default``."""

    name: str
    kind: type
    default: object
    choices: tuple | None = None
    optional: bool = False

    def check(self, value, analysis_name: str = "") -> object:
        """``value`` as this parameter's kind (text from a command line is converted), or a
        :class:`ParamError` that names the valid values."""
        where = f" of '{analysis_name}'" if analysis_name else ""
        if value is None and self.optional:
            return None
        if isinstance(value, str) and self.kind is not str:
            value = self._parse(value, where)
        if self.kind is float and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, np.generic):
            value = value.item()
        if self.kind is not object and (not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool))):
            raise ParamError(
                f"{self.name}{where} takes {self._describe()}, not {value!r} ({type(value).__name__})."
            )
        if self.choices is not None and value not in self.choices:
            raise ParamError(f"{self.name}{where} must be one of {', '.join(map(repr, self.choices))}; got {value!r}.")
        return value

    def _parse(self, text: str, where: str):
        raw = text.strip()
        if self.optional and raw.lower() in ("", "none"):
            return None
        try:
            if self.kind is bool:
                if raw.lower() in ("1", "true", "yes", "on"):
                    return True
                if raw.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            if self.kind is int:
                return int(raw)
            if self.kind is float:
                return float(raw)
        except ValueError:
            raise ParamError(f"{self.name}{where} takes {self._describe()}, not {text!r}.") from None
        return raw

    def _describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(self.kind, "a value")


def _param_of(name: str, annotation, default) -> Param:
    """A :class:`Param` from one keyword parameter's annotation (Literal, bool, int, float, str,
    optionally ``| None``)."""
    optional = False
    if get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(members) < len(get_args(annotation))
        if len(members) != 1:
            raise TypeError(f"parameter {name!r}: one type (or a Literal), optionally | None, not {annotation!r}")
        annotation = members[0]
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        kinds = {type(c) for c in choices}
        kind = kinds.pop() if len(kinds) == 1 else object
        return Param(name, kind, default, tuple(choices), optional)
    if annotation in (bool, int, float, str):
        return Param(name, annotation, default, None, optional)
    raise TypeError(f"parameter {name!r}: annotate it with Literal[...], bool, int, float or str, not {annotation!r}")


@dataclass(frozen=True)
class Analysis:
    """One declared piece of evidence (see the module docstring); call it like its function."""

    name: str
    title: str
    function: Callable = field(repr=False)
    inputs: tuple[str, ...]
    optional: tuple[str, ...]
    params: tuple[Param, ...]
    figures: tuple[str, ...]
    long: bool
    report: bool
    questions: tuple[int, ...]
    callbacks: tuple[str, ...]
    precheck: Callable | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        """The first paragraph of the function's docstring."""
        doc = inspect.getdoc(self.function) or ""
        return " ".join(doc.split("\n\n", 1)[0].split())

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ParamError(f"'{self.name}' has no parameter {name!r}; it has {', '.join(p.name for p in self.params) or 'none'}.")

    def check(self, **params) -> dict:
        """Every parameter, defaults filled in and values checked (:class:`ParamError` otherwise)."""
        unknown = sorted(set(params) - {p.name for p in self.params})
        if unknown:
            raise ParamError(
                f"'{self.name}' has no parameter {', '.join(map(repr, unknown))}; "
                f"it has {', '.join(p.name for p in self.params) or 'none'}."
            )
        return {p.name: p.check(params.get(p.name, p.default), self.name) for p in self.params}

    def validate(self, *inputs, **params) -> dict:
        """The checked parameters (:meth:`check`), after the declaration's ``precheck`` of the
        inputs, which raises ``ValueError`` or :class:`NotApplicable` for a run that could only fail."""
        checked = self.check(**params)
        if self.precheck is not None:
            self.precheck(*inputs, **checked)
        return checked

    def key(self, inputs: Sequence, params: dict) -> tuple:
        """A hashable cache key: the analysis, a digest of each input, the checked parameters."""
        checked = self.check(**params)
        return (self.name, tuple(digest(v) for v in inputs), tuple(sorted(checked.items())))

    def __call__(self, *inputs, progress=None, cancel=None, **params) -> Result:
        roles = self.inputs + self.optional
        if not len(self.inputs) <= len(inputs) <= len(roles):
            raise TypeError(f"'{self.name}' takes its inputs ({', '.join(roles)}) in that order; got {len(inputs)}")
        for role, value in zip(roles, inputs):
            if value is None and role not in self.optional:
                raise ValueError(f"'{self.name}' needs its {role}")
        callbacks = {"progress": progress, "cancel": cancel}
        extra = {name: callbacks[name] for name in self.callbacks}
        result = self.function(*inputs, **self.check(**params), **extra)
        if not isinstance(result, Result):
            raise TypeError(f"'{self.name}' returned {type(result).__name__}, not a clsviz.analyses.Result")
        return result


ANALYSES: dict[str, Analysis] = {}
"""Every declared analysis by name, in declaration order (the report's reading order)."""


def analysis(
    name: str,
    *,
    title: str,
    inputs: Sequence[str],
    optional: Sequence[str] = (),
    figures: Sequence[str] = (),
    long: bool = False,
    report: bool = False,
    questions: Sequence[int] = (),
    precheck: Callable | None = None,
) -> Callable[[Callable], Analysis]:
    """Declare the decorated function as the analysis ``name`` (see the module docstring).

    ``report=True`` puts it in the HTML report of one sentence (its inputs must then come from a
    trace: ``trace``, ``encoder``, ``baseline``). ``questions`` are the four questions (1-4) it
    answers. ``precheck(*inputs, **params)`` looks at the inputs before a long run is queued (see
    the module docstring). Returns the :class:`Analysis`, which is callable like the function.
    """

    def declare(function: Callable) -> Analysis:
        roles = (*inputs, *optional)
        bad = [r for r in roles if r not in INPUT_ROLES]
        if bad:
            raise ValueError(f"analysis {name!r}: unknown input role(s) {bad}; roles are {', '.join(INPUT_ROLES)}")
        if name in ANALYSES and ANALYSES[name].function is not function:
            raise ValueError(f"analysis {name!r} is declared twice")
        for key in figures:
            figure_spec(key)  # a KeyError naming the registered keys when the figure is unknown
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function)
        positional = [p.name for p in signature.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip
        if tuple(positional) != roles:
            raise TypeError(f"analysis {name!r}: positional parameters {positional} must be its inputs {list(roles)}")
        params, callbacks = [], []
        for p in signature.parameters.values():
            if p.kind is not p.KEYWORD_ONLY:
                continue
            if p.name in _CALLBACKS:
                callbacks.append(p.name)
                continue
            if p.default is p.empty:
                raise TypeError(f"analysis {name!r}: parameter {p.name!r} needs a default")
            params.append(_param_of(p.name, hints.get(p.name, type(p.default)), p.default))
        declared = Analysis(
            name=name,
            title=title,
            function=function,
            inputs=tuple(inputs),
            optional=tuple(optional),
            params=tuple(params),
            figures=tuple(figures),
            long=bool(long),
            report=bool(report),
            questions=tuple(questions),
            callbacks=tuple(callbacks),
            precheck=precheck,
        )
        for p in declared.params:
            p.check(p.default, name)  # a default outside its own choices is a declaration error
        ANALYSES[name] = declared
        return declared

    return declare


def get(name: str) -> Analysis:
    """The analysis ``name``; a KeyError that lists the declared names otherwise."""
    try:
        return ANALYSES[name]
    except KeyError:
        raise KeyError(f"no analysis {name!r}; declared: {', '.join(ANALYSES)}") from None


def names() -> list[str]:
    """Every declared analysis name, in declaration order."""
    return list(ANALYSES)


def run(name: str, *inputs, progress=None, cancel=None, **params) -> Result:
    """Run the analysis ``name`` on ``inputs`` with ``params`` (a module-level function, so a
    job can be sent to a worker process by name)."""
    return get(name)(*inputs, progress=progress, cancel=cancel, **params)


def _array_digest(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return f"{len(texts)}:{h.hexdigest()}"


_VECTOR_DIGESTS: dict[int, tuple[weakref.ref, Hashable]] = {}
_VECTOR_DIGESTS_LOCK = threading.Lock()


def _vectors_digest(value) -> Hashable:
    """The digest of PooledVectors, hashed once per object: the same cached vectors come back on
    every page run, and hashing tens of megabytes each time would cost more than the result."""
    with _VECTOR_DIGESTS_LOCK:
        held = _VECTOR_DIGESTS.get(id(value))
    if held is not None and held[0]() is value:
        return held[1]
    found = ("vectors", value.model_name, tuple(value.poolings), _texts_digest(value.texts), _array_digest(value.vectors))
    key = id(value)
    with _VECTOR_DIGESTS_LOCK:
        _VECTOR_DIGESTS[key] = (weakref.ref(value, lambda _: _forget_digest(key)), found)
    return found


def _forget_digest(key: int) -> None:
    with _VECTOR_DIGESTS_LOCK:
        _VECTOR_DIGESTS.pop(key, None)


def digest(value) -> Hashable:
    """A small hashable stand-in for an input, equal for equal content: an encoder by its name, a
    trace by (model, text, tokens kept), texts and corpora by a hash of their content, vectors by
    a hash of their array (once per object), a shard folder or anything else naming its content
    with a ``content_key`` string by that key. Used in cache keys, so two visitors with the same
    input share a result."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    info = getattr(value, "info", None)
    if hasattr(value, "hidden_states") and info is not None:  # a Trace
        return ("trace", info.name, value.text, value.seq_len, bool(value.truncated))
    if hasattr(value, "tokenizer") and info is not None:  # an Encoder
        return ("encoder", info.name)
    content_hash = getattr(value, "content_hash", None)
    if isinstance(content_hash, str):  # a Corpus
        return ("corpus", content_hash)
    if hasattr(value, "poolings") and hasattr(value, "vectors"):  # PooledVectors
        return _vectors_digest(value)
    content_key = getattr(value, "content_key", None)
    if isinstance(content_key, str):  # ShardedVectors: the manifest's checksums
        return ("content", type(value).__name__, content_key)
    if hasattr(value, "token_mean"):  # a Baseline
        return ("baseline", getattr(value, "model_name", ""), _array_digest(value.token_mean))
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return ("texts", _texts_digest(value))
        return tuple(digest(v) for v in value)
    if isinstance(value, np.ndarray):
        return ("array", _array_digest(value))
    if isinstance(value, pd.DataFrame):  # scored pairs, or any table input
        hashed = pd.util.hash_pandas_object(value, index=False).to_numpy()
        return ("table", tuple(map(str, value.columns)), _array_digest(hashed))
    raise TypeError(f"no digest for an input of type {type(value).__name__}")
