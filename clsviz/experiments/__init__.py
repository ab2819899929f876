"""Experiments: could any token do (probe, random token, fine-tuning), why first (position,
position probe), how [CLS] learns (dynamics: gradient flow, checkpoints; probing controls), can the
sentence be recovered (neighbours, inversion), what does [CLS] do (interventions: knockouts,
patching, head ablation, massive dimensions, registers), two models side by side."""

from .dynamics import *  # noqa: F401,F403
from .dynamics import __all__ as _dynamics_all
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
from .probe_controls import *  # noqa: F401,F403
from .probe_controls import __all__ as _probe_controls_all
from .random_token import *  # noqa: F401,F403
from .random_token import __all__ as _random_token_all
from .side_by_side import *  # noqa: F401,F403
from .side_by_side import __all__ as _side_by_side_all

__all__ = [
    *_probe_all,
    *_random_token_all,
    *_finetune_all,
    *_dynamics_all,
    *_probe_controls_all,
    *_position_all,
    *_moved_cls_all,
    *_neighbours_all,
    *_inversion_all,
    *_interventions_all,
    *_side_by_side_all,
]
