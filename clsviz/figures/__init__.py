"""Figures: pure functions from clsviz data objects to plotly ``go.Figure``.

No Streamlit, no model calls, no ``fig.show()``: every function takes a Trace,
PooledVectors or a result table and returns a Figure, so a notebook displays it directly.
One submodule per page area; this package re-exports their public functions, and each
registers its figures (key, title, caption) in :mod:`clsviz.figures.registry`.
"""

from ._attention import *  # noqa: F401,F403
from ._attention import __all__ as _attention_all
from ._classifier import *  # noqa: F401,F403
from ._classifier import __all__ as _classifier_all
from ._common import *  # noqa: F401,F403
from ._common import __all__ as _common_all
from ._compare import *  # noqa: F401,F403
from ._compare import __all__ as _compare_all
from ._dynamics import *  # noqa: F401,F403
from ._dynamics import __all__ as _dynamics_all
from ._embeddings import *  # noqa: F401,F403
from ._embeddings import __all__ as _embeddings_all
from ._interventions import *  # noqa: F401,F403
from ._interventions import __all__ as _interventions_all
from ._inversion import *  # noqa: F401,F403
from ._inversion import __all__ as _inversion_all
from ._literature import *  # noqa: F401,F403
from ._literature import __all__ as _literature_all
from ._mixing import *  # noqa: F401,F403
from ._mixing import __all__ as _mixing_all
from ._position import *  # noqa: F401,F403
from ._position import __all__ as _position_all
from ._probe import *  # noqa: F401,F403
from ._probe import __all__ as _probe_all
from ._similarity import *  # noqa: F401,F403
from ._similarity import __all__ as _similarity_all
from .registry import FigureSpec, figure_spec, figure_specs

__all__ = [
    *_common_all,
    *_attention_all,
    *_similarity_all,
    *_embeddings_all,
    *_probe_all,
    *_position_all,
    *_inversion_all,
    *_mixing_all,
    *_interventions_all,
    *_classifier_all,
    *_compare_all,
    *_dynamics_all,
    *_literature_all,
    "FigureSpec",
    "figure_spec",
    "figure_specs",
]



