"""Keyword arguments that were renamed: the old name keeps working, with a DeprecationWarning.

The token limit is called ``max_tokens`` everywhere (API, command line, app). The public entry
points that called it ``max_length`` still accept that name through :func:`accepts_max_length`.
"""

from __future__ import annotations

import functools
import warnings

__all__ = ["accepts_max_length"]


def accepts_max_length(fn):
    """``fn`` accepting ``max_length=`` as the old name of its ``max_tokens=`` (with a
    DeprecationWarning); both at once is a TypeError."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "max_length" in kwargs:
            if "max_tokens" in kwargs:
                raise TypeError(f"{fn.__name__}() got both max_tokens and max_length; max_length is the old name, pass max_tokens only.")
            warnings.warn(
                f"{fn.__name__}(max_length=...) is now {fn.__name__}(max_tokens=...): the one name for the token limit.",
                DeprecationWarning,
                stacklevel=2,
            )
            kwargs["max_tokens"] = kwargs.pop("max_length")
        return fn(*args, **kwargs)

    return wrapper
