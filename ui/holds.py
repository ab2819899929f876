"""Which sessions use which models, so that a second model leaves memory when nobody needs it.

Encoders live in ``ui.state.cached_encoder`` (``st.cache_resource``: one per model name, shared
by every session, at most four). The Compare page loads its second model ("B") through that same
loader and holds it here; when the person picks another second model, or none, the old one is
evicted from the loader's cache unless some session still uses it, as its sidebar model or as its
own second model. The sidebar notes each session's model here on every run
(``ui.state.sidebar_prediction``). The bundled model is never evicted. Sessions that ended
are forgotten once Streamlit reports them inactive.

Evicting only drops the cache's reference: a session or job still holding the encoder keeps
using it, and the next session that asks for that model loads it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from clsviz import DEFAULT_MODEL

__all__ = ["MAIN", "ROLES", "SECOND", "USES", "ModelUses", "forget_ended_sessions", "note_main_model", "session_id"]

MAIN, SECOND = "main", "second"
ROLES = (MAIN, SECOND)


class ModelUses:
    """Thread-safe record of (session, role) -> model name, for the whole process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uses: dict[tuple[str, str], str] = {}

    def set(self, session: str, role: str, name: str | None) -> str | None:
        """Record that ``session`` uses ``name`` as ``role`` (None: nothing); returns the
        model it used before in that role (or None)."""
        if role not in ROLES:
            raise ValueError(f"Unknown role '{role}'; choose from {', '.join(ROLES)}.")
        with self._lock:
            previous = self._uses.pop((session, role), None)
            if name:
                self._uses[(session, role)] = name
            return previous

    def get(self, session: str, role: str) -> str | None:
        with self._lock:
            return self._uses.get((session, role))

    def users(self, name: str) -> set[tuple[str, str]]:
        """The (session, role) pairs that use ``name`` now."""
        with self._lock:
            return {key for key, used in self._uses.items() if used == name}

    def forget_inactive(self, is_active: Callable[[str], object]) -> None:
        """Drop every session for which ``is_active(session)`` returns False (anything else,
        an error included, keeps it: an unknown answer must not free a model in use)."""
        with self._lock:
            sessions = {session for session, _ in self._uses}
        gone = set()
        for session in sessions:
            try:
                if is_active(session) is False:
                    gone.add(session)
            except Exception:
                continue
        with self._lock:
            for key in [k for k in self._uses if k[0] in gone]:
                del self._uses[key]

    def release(self, name: str, evict: Callable[[str], None]) -> bool:
        """``evict(name)`` when no session uses ``name`` and it is not the bundled model;
        True when it was evicted. The check and the eviction happen under one lock, so a
        session noting the model at that moment either keeps it or loads it again."""
        if not name or name == DEFAULT_MODEL:
            return False
        with self._lock:
            if any(used == name for used in self._uses.values()):
                return False
            evict(name)
            return True

    def clear(self) -> None:
        with self._lock:
            self._uses.clear()


USES = ModelUses()
"""The process-wide record the app uses."""


def session_id() -> str:
    """This browser session's id (``"local"`` outside a Streamlit run)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "local"


def forget_ended_sessions() -> None:
    from streamlit import runtime

    if runtime.exists():
        USES.forget_inactive(runtime.get_instance().is_active_session)


def note_main_model(name: str) -> None:
    """Record the model this session's sidebar uses (called on every run)."""
    USES.set(session_id(), MAIN, name)
