"""Figures: pure functions from clsviz data objects to plotly ``go.Figure``.

No Streamlit, no model calls, no ``fig.show()``: every function takes a Trace,
PooledVectors or a result table and returns a Figure, so a notebook displays it directly.
One submodule per page area; this package re-exports their public functions.
"""

from ._attention import *  # noqa: F401,F403
from ._attention import __all__ as _attention_all
from ._common import *  # noqa: F401,F403
from ._common import __all__ as _common_all
from ._embeddings import *  # noqa: F401,F403
from ._embeddings import __all__ as _embeddings_all
from ._experiments import *  # noqa: F401,F403
from ._experiments import __all__ as _experiments_all
from ._similarity import *  # noqa: F401,F403
from ._similarity import __all__ as _similarity_all

__all__ = [*_common_all, *_attention_all, *_similarity_all, *_embeddings_all, *_experiments_all]
