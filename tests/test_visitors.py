"""A small crowd on a real server (``python -m ui.serve``, as make run starts it): six visitors
over Streamlit's WebSocket protocol (devtools/visitor.py), typing, moving sliders, uploading a
corpus and starting background jobs at once. It checks the guarantees, not the timings (those
are the 50-visitor figures of ``make bench``, benchmarks/visitors.py): every visitor ends with
its own result or a clear message, no exception reaches a page, each job's page shows where the
job stands, the queue stays bounded and the server stays within its memory budget."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from benchmarks.visitors import MEMORY_BUDGET_GB, crowd, run_crowd
from devtools.browser import streamlit_process

PARTS = ["reader", "job", "reader", "job", "upload", "reader"]  # jobs: value zeroing (2), the scoreboard (3)


@pytest.mark.slow
def test_six_visitors_at_once_each_get_their_result_and_nothing_is_lost():
    with tempfile.TemporaryDirectory() as tmp, \
            streamlit_process(Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp, "CLSVIZ_MAX_JOBS": "1"}) as server:
        result = run_crowd(server, len(PARTS), parts=PARTS, think=(0.2, 0.6), arrival=2.0, deadline=900.0,
                           idle_rounds=0)
        log = (Path(tmp) / "server.log").read_text(errors="replace")
    report = "\n".join(f"{o.name} ({o.role}): {o.ended} {o.note} status={o.status[:3]}" for o in result.outcomes)
    assert [o.role for o in result.outcomes] == PARTS
    # Nothing is lost: each visitor got its result (its own sentence on its own page: the readers
    # check it at each step) or a message that says what happened, and no page showed an exception.
    assert all(o.ended in ("result", "message") for o in result.outcomes), report
    assert not [o for o in result.outcomes if o.exceptions], report
    assert all(o.ended == "result" for o in result.outcomes if o.role == "reader"), report
    assert "Traceback" not in log, log[-3000:]
    # Each visitor with queued work saw on its page where its job stood (its place in the queue,
    # starting, or running), and no page ever counted more jobs ahead than were submitted.
    queued_work = [o for o in result.outcomes if o.role in ("job", "upload")]
    assert all(o.status for o in queued_work), report
    assert max((q for o in queued_work for q in o.queued), default=0) < len(queued_work), report
    # Memory: the server and its job worker stayed within the budget the bench figure is held to.
    assert 0 < result.peak_rss_bytes <= MEMORY_BUDGET_GB * 2**30


def test_the_crowd_only_visits_this_machine_and_is_bounded():
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(crowd("http://example.com:8501", 1))
    with pytest.raises(ValueError, match="1 to 100 visitors"):
        asyncio.run(crowd("http://127.0.0.1:9", 101))
