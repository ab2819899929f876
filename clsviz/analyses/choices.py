"""Parameters given as comma-separated names (``"tokens,cls,mean"``), checked against the valid ones."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["comma_choices"]


def comma_choices(text: str, valid: Sequence[str], what: str) -> tuple[str, ...]:
    """The names of ``text`` (in order, once each), each one of ``valid``; a ValueError naming
    ``what`` and the valid names when there are none or one is unknown."""
    names = tuple(dict.fromkeys(s.strip() for s in str(text).split(",") if s.strip()))
    bad = [s for s in names if s not in valid]
    if not names or bad:
        raise ValueError(f"{what}: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(valid)}.")
    return names
