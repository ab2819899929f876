"""Figures for this page area (filled in as the page lands)."""

__all__: list[str] = []

# probe
from ._probe import *  # noqa: E402,F401,F403
from ._probe import __all__ as _probe_all  # noqa: E402

__all__ += _probe_all

# position
from ._position import *  # noqa: E402,F401,F403
from ._position import __all__ as _position_all  # noqa: E402

__all__ += _position_all

# inversion
from ._inversion import *  # noqa: E402,F401,F403
from ._inversion import __all__ as _inversion_all  # noqa: E402

__all__ += _inversion_all
