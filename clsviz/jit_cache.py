"""numba's on-disk cache for umap-learn and pynndescent, so their code is compiled once per
machine instead of once per process.

umap-learn and pynndescent compile about 250 numba functions on first use (``umap_warm_up_s``:
18 s in a fresh process on two quiet cores, over a minute on a busy machine), and most of them
are not declared ``cache=True``, so every new process (a restarted server, a worker, the CLI)
compiled them again. :func:`umap_module` imports umap-learn and turns numba's file cache on for
each of those functions before its first call (``Dispatcher.enable_caching``): the first
process writes the machine code to :func:`cache_dir`, later ones load it in milliseconds. numba
keys the cache on the function's source file and time stamp, the CPU and numba's version, so an
upgraded library or another machine compiles afresh rather than loading stale code.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir", "enable", "umap_module"]

CACHE_ENV = "NUMBA_CACHE_DIR"
"""numba's own setting for where its cache lives; when unset, :func:`cache_dir` picks one."""
_PREFIXES = ("umap", "pynndescent")
_lock = threading.Lock()
_done: list[int] = []  # the number of functions whose caching was turned on, once done


def cache_dir() -> Path | None:
    """``NUMBA_CACHE_DIR`` when set, else ``~/.cache/clsviz/numba`` (a temporary folder's when the
    home folder cannot be written); None when no folder can be written."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    candidates = [Path(raw)] if raw else [Path.home() / ".cache" / "clsviz" / "numba",
                                          Path(tempfile.gettempdir()) / "clsviz-numba"]
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return None


def enable() -> int:
    """Turn numba's file cache on for every compiled function of the umap-learn and pynndescent
    modules imported so far (once per process); returns how many functions it covers (0 when
    no cache folder can be written: they then compile in memory, as before)."""
    with _lock:
        if _done:
            return _done[0]
        import numba  # optional heavy dependency (umap-learn's), loaded only with UMAP
        from numba.core.registry import CPUDispatcher

        folder = cache_dir()
        count = 0
        if folder is not None:
            numba.config.CACHE_DIR = str(folder)
            for name, module in list(sys.modules.items()):
                if module is None or name.split(".")[0] not in _PREFIXES:
                    continue
                for value in list(vars(module).values()):
                    if isinstance(value, CPUDispatcher):
                        try:
                            value.enable_caching()
                            count += 1
                        except Exception:  # e.g. a function numba cannot cache: it compiles as before
                            continue
        _done.append(count)
        return count


def umap_module():
    """``import umap`` with numba's file cache on for its functions (see the module docstring)."""
    import umap  # optional heavy dependency: imported only when a projection needs it
    import umap.umap_  # noqa: F401 - the modules whose functions the fit compiles

    enable()
    return umap
