"""Text for Streamlit's Markdown elements, shown exactly as written (every ``ui`` module and page
can import this: it imports nothing of the app's)."""

from __future__ import annotations

import re

__all__ = ["plain"]

_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~$:])")


def plain(text: str) -> str:
    """Text for st.info / st.error / st.caption (which read Markdown) shown exactly as written."""
    return _MARKDOWN.sub(r"\\\1", str(text))
