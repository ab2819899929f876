"""Showing text a person wrote (or that quotes it) exactly as written, never as Markdown or HTML."""

from __future__ import annotations

import re

__all__ = ["plain"]

_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~$:])")


def plain(text: str) -> str:
    """Text for st.info / st.error / st.caption (which read Markdown) shown exactly as written."""
    return _MARKDOWN.sub(r"\\\1", str(text))
