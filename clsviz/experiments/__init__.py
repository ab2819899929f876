"""Experiments: could any token do (probe, fine-tuning), why first (position), inversion."""

from .finetune import *  # noqa: F401,F403
from .finetune import __all__ as _finetune_all
from .probe import *  # noqa: F401,F403
from .probe import __all__ as _probe_all

__all__ = [*_probe_all, *_finetune_all]

# position
from .position import *  # noqa: E402,F401,F403
from .position import __all__ as _position_all  # noqa: E402

__all__ += _position_all

# inversion
from .inversion import *  # noqa: E402,F401,F403
from .inversion import __all__ as _inversion_all  # noqa: E402

__all__ += _inversion_all
