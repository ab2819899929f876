"""The figure registry: each figure's key, title, caption and drawing function, written once.

Titles and captions live in ``captions.toml`` beside this module (prose, kept apart from code);
a figure module registers its drawing functions by key at import time::

    register("attention.to_cls", cls_attention_heatmap)

The app's pages draw a figure with ``ui.widgets.show("attention.to_cls", fig)`` and the offline
HTML report reads the same title and caption, so a caption is never written twice. Keys are
``"<area>.<name>"``; :func:`figure_specs` lists them in registration order.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

__all__ = ["FigureSpec", "figure_spec", "figure_specs", "register"]


@dataclass(frozen=True)
class FigureSpec:
    """One figure: a stable ``key``, a ``title`` (a heading), a ``caption`` saying what the plot
    shows and what to look for, and ``draw``, the :mod:`clsviz.figures` function that builds it."""

    key: str
    title: str
    caption: str
    draw: Callable


_SPECS: dict[str, FigureSpec] = {}


@lru_cache(maxsize=1)
def _texts() -> dict[str, dict]:
    with files("clsviz.figures").joinpath("captions.toml").open("rb") as fh:
        return tomllib.load(fh)


def register(key: str, draw: Callable) -> FigureSpec:
    """Register ``draw`` under ``key``, whose title and caption must be in ``captions.toml``."""
    text = _texts().get(key)
    if text is None or not text.get("title") or not text.get("caption"):
        raise KeyError(f"figure {key!r} has no title and caption in clsviz/figures/captions.toml")
    if key in _SPECS and _SPECS[key].draw is not draw:
        raise ValueError(f"figure key {key!r} is registered twice")
    spec = FigureSpec(key, text["title"], " ".join(text["caption"].split()), draw)
    _SPECS[key] = spec
    return spec


def figure_spec(key: str) -> FigureSpec:
    """The registered figure ``key``; KeyError listing the keys of the same area otherwise."""
    try:
        return _SPECS[key]
    except KeyError:
        area = key.split(".", 1)[0]
        near = [k for k in _SPECS if k.startswith(area + ".")] or list(_SPECS)
        raise KeyError(f"no figure {key!r}; registered: {', '.join(near)}") from None


def figure_specs(prefix: str = "") -> list[FigureSpec]:
    """Every registered figure whose key starts with ``prefix``, in registration order."""
    return [s for k, s in _SPECS.items() if k.startswith(prefix)]
