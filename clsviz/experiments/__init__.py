"""Experiments: could any token do (probe, random token, fine-tuning), why first (position,
position probe), can the sentence be recovered (neighbours, inversion), and what does [CLS]
do (interventions: knockouts, patching, head ablation, massive dimensions, registers)."""

from .finetune import *  # noqa: F401,F403
from .finetune import __all__ as _finetune_all
from .interventions import *  # noqa: F401,F403
from .interventions import __all__ as _interventions_all
from .inversion import *  # noqa: F401,F403
from .inversion import __all__ as _inversion_all
from .moved_cls import *  # noqa: F401,F403
from .moved_cls import __all__ as _moved_cls_all
from .neighbours import *  # noqa: F401,F403
from .neighbours import __all__ as _neighbours_all
from .position import *  # noqa: F401,F403
from .position import __all__ as _position_all
from .probe import *  # noqa: F401,F403
from .probe import __all__ as _probe_all
from .random_token import *  # noqa: F401,F403
from .random_token import __all__ as _random_token_all

__all__ = [
    *_probe_all,
    *_random_token_all,
    *_finetune_all,
    *_position_all,
    *_moved_cls_all,
    *_neighbours_all,
    *_inversion_all,
    *_interventions_all,
]
