"""Experiments: could any token do (probe, fine-tuning), why first (position), inversion."""

from .finetune import *  # noqa: F401,F403
from .finetune import __all__ as _finetune_all
from .probe import *  # noqa: F401,F403
from .probe import __all__ as _probe_all

__all__ = [*_probe_all, *_finetune_all]
