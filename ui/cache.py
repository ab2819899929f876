"""The app's one cache: every large result, shared by all sessions, inside one memory budget.

Traces, attention maps, figures, corpus vectors, projections and experiment results are kept
in a single least-recently-used cache whose size is counted in bytes (``cachetools.LRUCache``
with a ``getsizeof``: a small, well-kept library that does exactly sized LRU eviction, so the
app does not keep its own linked list). The budget comes from ``CLSVIZ_CACHE_MB`` (default
:data:`DEFAULT_BUDGET_MB`). A result larger than the whole budget is returned without being
kept. Model weights are not counted here: encoders live in Streamlit's resource cache, one
per model name, and the model list bounds them.

Everything cached is treated as read-only by every caller (it is shared across sessions).
Computing the same key twice at once is avoided: the second caller waits for the first.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Hashable

import numpy as np

__all__ = [
    "BUDGET_ENV",
    "DEFAULT_BUDGET_MB",
    "REQUEST_SHARE",
    "BudgetCache",
    "budget_bytes",
    "cached",
    "nbytes",
    "request_bytes",
    "shared_cache",
]

BUDGET_ENV = "CLSVIZ_CACHE_MB"
"""Environment variable: the cache's budget in megabytes (10^6 bytes)."""

DEFAULT_BUDGET_MB = 4000
"""4 GB: with the model (0.1-0.5 GB per model), Python and the request limits this keeps a
2-core / 24 GB machine far from swapping even with several large corpora open."""


def budget_bytes() -> int:
    """The budget from ``CLSVIZ_CACHE_MB`` (a positive number), else the default, in bytes."""
    raw = os.environ.get(BUDGET_ENV, "").strip().replace("_", "")
    try:
        mb = float(raw) if raw else DEFAULT_BUDGET_MB
    except ValueError:
        mb = DEFAULT_BUDGET_MB
    return int((mb if mb > 0 else DEFAULT_BUDGET_MB) * 1_000_000)


REQUEST_SHARE = 4
"""One request (the sentences one person traces at once) may fill at most 1/REQUEST_SHARE of the
budget, so one visitor can never push every other session's results out."""


def request_bytes() -> int:
    """The most one request may add to the cache: the budget / :data:`REQUEST_SHARE`."""
    return budget_bytes() // REQUEST_SHARE


def nbytes(value, _depth: int = 0) -> int:
    """An estimate of the memory ``value`` holds: arrays, tensors, frames, figures and the
    containers, dataclasses and objects that hold them are counted by their contents."""
    try:
        return _nbytes(value, _depth)
    except Exception:  # an exotic object (compiled-function wrappers, proxies): its shallow size
        return sys.getsizeof(value)


def _nbytes(value, _depth: int) -> int:
    if _depth > 6:
        return sys.getsizeof(value)
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if hasattr(value, "nbytes") and isinstance(value.nbytes, int):  # PooledVectors, tensors
        return int(value.nbytes)
    if type(value).__module__.startswith("pandas") and hasattr(value, "memory_usage"):
        usage = value.memory_usage(deep=True)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    if type(value).__module__.startswith("plotly") and hasattr(value, "data"):
        return sum(nbytes(trace.to_plotly_json(), _depth + 1) for trace in value.data) + 4096
    if isinstance(value, (str, bytes)):
        return sys.getsizeof(value)
    if isinstance(value, dict):
        return sum(nbytes(k, _depth + 1) + nbytes(v, _depth + 1) for k, v in value.items()) + 64
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(nbytes(v, _depth + 1) for v in value) + 56
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name), _depth + 1) for f in dataclasses.fields(value)) + 64
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        return sum(nbytes(v, _depth + 1) for v in attributes.values()) + 64
    return sys.getsizeof(value)


class BudgetCache:
    """A thread-safe LRU cache bounded by the bytes its values hold (see :func:`nbytes`)."""

    def __init__(self, max_bytes: int):
        from cachetools import LRUCache

        self.max_bytes = int(max_bytes)
        self._lru = LRUCache(maxsize=self.max_bytes, getsizeof=lambda entry: entry[1])
        self.evictions = 0
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Event] = {}
        self.hits = self.misses = self.too_large = 0

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._lru

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return int(self._lru.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def keys(self) -> list:
        """The keys held now, least recently used first."""
        with self._lock:
            return list(self._lru.keys())

    def get(self, key: Hashable, default=None):
        with self._lock:
            entry = self._lru.get(key)
        return default if entry is None else entry[0]

    def put(self, key: Hashable, value, size: int | None = None) -> bool:
        """Keep ``value`` (evicting the least recently used); False when it exceeds the budget."""
        size = nbytes(value) if size is None else int(size)
        with self._lock:
            if size > self.max_bytes:
                self.too_large += 1
                self._lru.pop(key, None)
                return False
            expected = len(self._lru) + (key not in self._lru)
            self._lru[key] = (value, max(size, 1))
            evicted = expected - len(self._lru)
        if evicted:
            self.evictions += evicted
            _release_freed_memory()
        return True

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()

    def get_or_compute(self, key: Hashable, compute: Callable[[], object]):
        """The cached value of ``key``, or ``compute()`` kept under it. A second caller asking
        for a key that is being computed waits for it instead of computing it again; a failed
        computation is not cached (the next caller tries again)."""
        while True:
            with self._lock:
                entry = self._lru.get(key)
                if entry is not None:
                    self.hits += 1
                    return entry[0]
                running = self._computing.get(key)
                if running is None:
                    self.misses += 1
                    running = self._computing[key] = threading.Event()
                    break
            running.wait()
        try:
            value = compute()
            self.put(key, value)
            return value
        finally:
            with self._lock:
                self._computing.pop(key, None)
            running.set()


def _release_freed_memory() -> None:
    """Hand memory freed by evictions back to the system. glibc keeps freed blocks of large
    arrays for reuse once its mmap threshold has grown, so without this the process's resident
    size drifts above the budget (measured: 170 MB growth for a 120 MB budget; 90 MB with it)."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL("libc.so.6")
    return _LIBC


_shared: BudgetCache | None = None
_shared_lock = threading.Lock()


def shared_cache() -> BudgetCache:
    """The process-wide cache (created on first use with :func:`budget_bytes`)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = BudgetCache(budget_bytes())
        return _shared


def cached(namespace: str, key: tuple, compute: Callable[[], object]):
    """``compute()`` once per ``(namespace, *key)`` for the whole process, inside the budget.

    ``key`` must name every input of the result (model name, text, settings, content hashes)."""
    return shared_cache().get_or_compute((namespace, *key), compute)
