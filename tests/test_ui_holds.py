"""ui.holds: which sessions use which models, and when a second model may leave memory."""

from __future__ import annotations

import threading

import pytest

from clsviz import DEFAULT_MODEL
from ui.holds import MAIN, SECOND, ModelUses


def _evictions():
    evicted: list[str] = []
    return evicted, evicted.append


def test_a_model_nobody_uses_is_evicted_once():
    uses, (evicted, evict) = ModelUses(), _evictions()
    assert uses.set("s1", SECOND, "m") is None
    assert uses.set("s1", SECOND, "n") == "m"  # the previous second model
    assert uses.release("m", evict) and evicted == ["m"]
    assert not uses.release("n", evict)  # s1 still holds n
    assert uses.set("s1", SECOND, None) == "n" and uses.release("n", evict)
    assert evicted == ["m", "n"]


def test_a_model_used_elsewhere_is_kept():
    uses, (evicted, evict) = ModelUses(), _evictions()
    uses.set("s1", SECOND, "m")
    uses.set("s2", MAIN, "m")  # another session reads it from its sidebar
    uses.set("s1", SECOND, None)
    assert not uses.release("m", evict) and evicted == []
    assert uses.users("m") == {("s2", MAIN)}
    uses.set("s2", MAIN, DEFAULT_MODEL)
    assert uses.release("m", evict) and evicted == ["m"]


def test_the_bundled_model_and_empty_names_are_never_evicted():
    uses, (evicted, evict) = ModelUses(), _evictions()
    assert not uses.release(DEFAULT_MODEL, evict)
    assert not uses.release("", evict)
    assert evicted == []


def test_ended_sessions_are_forgotten_only_when_reported_inactive():
    uses = ModelUses()
    for session in ("ended", "alive", "unknown", "broken"):
        uses.set(session, MAIN, "m")

    def is_active(session):
        if session == "broken":
            raise RuntimeError("no runtime")
        return {"ended": False, "alive": True}.get(session, object())  # anything but False: keep

    uses.forget_inactive(is_active)
    assert {s for s, _ in uses.users("m")} == {"alive", "unknown", "broken"}


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="Unknown role 'third'"):
        ModelUses().set("s", "third", "m")


def test_concurrent_sessions_never_evict_a_model_in_use():
    """Many sessions pick and drop the same second model at once: after each one's release, a
    model is evicted only at a moment when nobody held it."""
    uses = ModelUses()
    lock = threading.Lock()
    violations: list[set] = []

    def evict(name):  # called under the record's lock: check the state it decided on
        holders = {k for k, v in uses._uses.items() if v == name}
        if holders:
            with lock:
                violations.append(holders)

    def session(i: int):
        for _ in range(300):
            uses.set(f"s{i}", SECOND, "m")
            uses.set(f"s{i}", SECOND, None)
            uses.release("m", evict)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert violations == []
    assert uses.users("m") == set()
