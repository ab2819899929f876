"""A small crowd on a real server (``python -m ui.serve``, as make run starts it): six visitors
over Streamlit's WebSocket protocol (devtools/visitor.py), typing, moving sliders, uploading a
corpus and starting background jobs at once. It checks the guarantees, not the timings (those
are the 50-visitor figures of ``make bench``, benchmarks/visitors.py): every visitor ends with
its own result or a clear message, no exception reaches a page, each job's page shows where the
job stands, the queue stays bounded and the server stays within its memory budget."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from benchmarks.visitors import MEMORY_BUDGET_GB, crowd, run_crowd
from devtools.browser import streamlit_process
from devtools.visitor import run_coroutine

ROOT = Path(__file__).resolve().parent.parent
PARTS = ["reader", "job", "reader", "job", "upload", "reader"]  # jobs: value zeroing (2), the scoreboard (3)


@pytest.mark.slow
def test_six_visitors_at_once_each_get_their_result_and_nothing_is_lost():
    with (
        tempfile.TemporaryDirectory() as tmp,
        streamlit_process(
            Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp, "CLSVIZ_MAX_JOBS": "1"}
        ) as server,
    ):
        result = run_crowd(
            server, len(PARTS), parts=PARTS, think=(0.2, 0.6), arrival=2.0, deadline=900.0, idle_rounds=0
        )
        log = (Path(tmp) / "server.log").read_text(errors="replace")
    report = "\n".join(
        f"{o.name} ({o.role}): {o.ended} {o.note} status={o.status[:3]}" for o in result.outcomes
    )
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
        run_coroutine(crowd("http://example.com:8501", 1))
    with pytest.raises(ValueError, match="1 to 100 visitors"):
        run_coroutine(crowd("http://127.0.0.1:9", 101))


def test_the_server_does_not_collect_every_generation_after_each_page_run():
    # Streamlit's default runs gc.collect(2) after every script and fragment run; over the server's heap it held
    # the GIL for every session (a fifth of the server's CPU under fifty visitors, py-spy). The option is read the
    # way the server reads it (.streamlit/config.toml in the app's folder), so a misspelt key fails here too.
    code = (
        "from streamlit import config; config.get_config_options(force_reparse=True); "
        "print(config.get_option('runner.postScriptGC'))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
