"""The background job scheduler: one queue, worker process at a lower priority, positions,
cancel while queued or running, closed sessions, the per-session limit, and jobs lost with a
server restart (ui/jobs.py, ui/worker.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from clsviz import Corpus, extract
from tests import job_functions as F
from ui import engine, jobs, journal, worker


@pytest.fixture
def fresh(monkeypatch):
    """A scheduler of its own (one slot) for each test, threads by default."""

    def make(process: bool = False, slots: int = 1):
        monkeypatch.setenv("CLSVIZ_JOB_PROCESS", "1" if process else "0")
        scheduler = engine.Scheduler(slots)
        monkeypatch.setattr(engine, "_scheduler", scheduler)
        return scheduler

    return make


def _wait_for(condition, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_picklable_job_runs_in_a_lower_priority_worker_process(fresh):
    fresh(process=True)
    job = jobs.Job(fn=F.where, name="where").begin()
    assert job.wait(180), job.message
    assert job.status == jobs.DONE, job.error
    assert job.mode == "process"
    assert job.result["pid"] != os.getpid()
    assert job.result["nice"] >= min(19, os.nice(0) + worker.NICENESS)


def test_a_worker_extracts_what_the_server_would(fresh, tiny_encoder):
    fresh(process=True)
    texts = ["the cat chased a dog", "why is the token first", "a model of attention"]
    job = jobs.Job(
        fn=extract, args=(tiny_encoder, texts), kwargs={"poolings": ("cls", "mean")}, name="x"
    ).begin()
    assert job.wait(180) and job.status == jobs.DONE, job.error
    here = extract(tiny_encoder, texts, poolings=("cls", "mean"))
    np.testing.assert_allclose(job.result.vectors, here.vectors, atol=1e-6)
    assert job.result.texts == here.texts and job.total == len(texts) and job.fraction == 1.0


def test_a_running_worker_job_can_be_cancelled_and_reports_progress(fresh):
    fresh(process=True)
    job = jobs.Job(fn=F.wait_for_cancel, name="w").begin()
    assert _wait_for(lambda: job.message == "waiting", 180), job.message  # progress crossed over
    assert job.status == jobs.RUNNING
    job.cancel()
    assert job.wait(30)
    assert job.status == jobs.CANCELLED and job.error is None


def test_a_failure_in_the_worker_is_a_message(fresh):
    fresh(process=True)
    job = jobs.Job(fn=F.fail, name="f").begin()
    assert job.wait(180)
    assert job.status == jobs.FAILED and job.error == "the label has one class"
    assert isinstance(job.exception, ValueError)


def test_jobs_that_cannot_be_pickled_run_in_a_thread(fresh):
    fresh(process=True)
    job = jobs.Job(fn=lambda progress, cancel: 41 + 1, name="l").begin()
    assert job.wait(30) and job.result == 42 and job.mode == "thread"


def test_queue_positions_and_cancel_while_queued(fresh):
    fresh()
    first = jobs.Job(fn=F.wait_for_cancel, name="a").begin()
    assert _wait_for(lambda: first.status == jobs.RUNNING)
    second = jobs.Job(fn=F.count, args=(3,), name="b").begin()
    third = jobs.Job(fn=F.count, args=(3,), name="c").begin()
    assert (first.ahead, second.ahead, third.ahead) == (None, 1, 2)
    assert "2 jobs ahead of you" in jobs.status_line(third)
    third.cancel()
    assert third.status == jobs.CANCELLED and third.started is None  # left the queue at once
    assert second.ahead == 1
    first.cancel()
    assert second.wait(30) and second.result == 6
    assert third.result is None


def test_jobs_of_a_closed_session_are_cancelled(fresh, monkeypatch):
    monkeypatch.setattr(engine, "WATCH_SECONDS", 0.05)
    monkeypatch.setenv("CLSVIZ_JOB_GRACE_S", "0.2")
    fresh(slots=2).alive = lambda session: session != "closed-tab"
    gone = jobs.Job(fn=F.wait_for_cancel, name="gone", session="closed-tab").begin()
    kept = jobs.Job(fn=F.wait_for_cancel, name="kept", session="open-tab").begin()
    assert gone.wait(30)
    assert gone.status == jobs.CANCELLED
    assert kept.active
    kept.cancel()
    assert kept.wait(30)


def _session_script():
    import streamlit as st

    from ui import jobs as J

    for key in ("one", "two", "three"):
        try:
            J.start(
                key, __import__("tests.job_functions", fromlist=["x"]).wait_for_cancel, label=f"job {key}"
            )
        except J.JobLimitError as exc:
            st.error(str(exc))


def test_a_session_may_hold_only_so_many_jobs(fresh):
    fresh(slots=1)
    at = AppTest.from_function(_session_script, default_timeout=60)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "a session may run 2 at once" in at.error[0].value
    held = at.session_state["clsviz.jobs"]
    assert sorted(held) == ["one", "two"]
    assert "one:" in at.query_params["jobs"] and "two:" in at.query_params["jobs"]
    for job in held.values():
        job.cancel()
        assert job.wait(30)


def _panel_script():
    import streamlit as st

    from ui import jobs as J

    job = J.panel("demo.count", "Counting")
    if job is not None:
        st.write(f"result {job.result}")


def test_a_job_lost_with_a_server_restart_says_so_and_starts_again(fresh):
    fresh()
    # What a server that died mid-job leaves behind: a journal entry "running" and the job itself.
    job_id = "abc123def456"
    folder = journal.state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job_id}.json").write_text(
        '{"id": "abc123def456", "key": "demo.count", "label": "counting", "status": "running", "time": 0}'
    )
    (folder / f"{job_id}.job").write_bytes(worker.dumps((F.count, (3,), {})))
    at = AppTest.from_function(_panel_script, default_timeout=60)
    at.query_params["jobs"] = f"demo.count:{job_id}"
    at.run()
    assert not at.exception
    assert any("interrupted when the server restarted" in w.value for w in at.warning)
    assert not [m for m in at.markdown if "result" in m.value]  # nothing half-done shown as a result
    next(b for b in at.button if b.label == "Start the counting again").click()
    at.run()
    restarted = at.session_state["clsviz.jobs"]["demo.count"]
    assert restarted.wait(30) and restarted.status == jobs.DONE
    at.run()
    assert any(m.value == "result 6" for m in at.markdown)


def test_a_finished_job_lost_with_a_restart_is_not_shown_as_a_result(fresh):
    fresh()
    job_id = "fedcba654321"
    (journal.state_dir() / f"{job_id}.json").write_text(
        '{"id": "fedcba654321", "key": "demo.count", "label": "counting", "status": "done", "time": 0}'
    )
    at = AppTest.from_function(_panel_script, default_timeout=60)
    at.query_params["jobs"] = f"demo.count:{job_id}"
    at.run()
    assert any("result was lost when the server restarted" in w.value for w in at.warning)
    assert not [b for b in at.button if b.label.startswith("Start")]  # nothing kept to start again


def test_a_reloaded_tab_gets_its_running_job_back(fresh, monkeypatch):
    fresh()
    monkeypatch.setattr(jobs, "session_alive", lambda session: session != "old-tab")
    job = jobs.Job(fn=F.wait_for_cancel, name="demo.count", session="old-tab", label="counting").begin()
    at = AppTest.from_function(_panel_script, default_timeout=60)
    at.query_params["jobs"] = f"demo.count:{job.id}"
    at.run()
    assert at.session_state["clsviz.jobs"]["demo.count"] is job
    assert job.session != "old-tab"
    job.cancel()
    assert job.wait(30)


def test_the_journal_records_each_job(fresh):
    fresh()
    job = jobs.Job(fn=F.count, args=(2,), name="journal", label="two steps").begin()
    assert job.wait(30)
    record = journal.read(job.id)
    assert record["status"] == jobs.DONE and record["label"] == "two steps" and record["key"] == "journal"
    assert not (journal.state_dir() / f"{job.id}.job").exists()  # finished: nothing kept to restart
    assert journal.read("../../etc/passwd") is None


# --- warm workers, and a worker killed mid-job --------------------------------------------------


def _running_in_a_worker(job, timeout: float = 180) -> int:
    assert _wait_for(lambda: job.status == jobs.RUNNING and job.worker_pid is not None, timeout), job.message
    return job.worker_pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_warm_worker_keeps_the_model_between_jobs(fresh, tiny_model_dirs, tiny_encoder):
    scheduler = fresh(process=True)
    name = str(tiny_model_dirs["bert"])
    assert tiny_encoder.name == name
    assert scheduler.slots[0].warm((name,)).result(180) == [name]  # loaded before any job asked for it
    first = jobs.Job(fn=F.model_identity, args=(tiny_encoder,), name="a").begin()
    second = jobs.Job(fn=F.model_identity, args=(tiny_encoder,), name="b").begin()
    assert first.wait(180) and second.wait(180), (first.error, second.error)
    assert first.result["pid"] == second.result["pid"] != os.getpid()  # the same process ...
    assert first.result["encoder"] == second.result["encoder"]  # ... handed the same loaded model
    assert first.result["models"] == [name]


def test_a_killed_worker_fails_its_job_with_a_retry_and_the_other_slot_runs_on(fresh):
    fresh(process=True, slots=2)
    victim = jobs.Job(fn=F.wait_for_cancel, name="victim", label="victim").begin()
    other = jobs.Job(fn=F.count, args=(40,), kwargs={"delay": 0.25}, name="other").begin()
    pid = _running_in_a_worker(victim)
    other_pid = _running_in_a_worker(other)
    assert pid != other_pid  # one process per slot
    os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would
    assert victim.wait(60)
    assert victim.status == jobs.FAILED and victim.retry
    assert "was killed" in victim.error and "Retry" in victim.error and str(pid) in victim.error
    assert other.active and _alive(other_pid)  # the other visitor's job never noticed
    assert other.wait(120) and other.status == jobs.DONE and other.result == 80
    # The slot is free again and has a fresh worker for the next job.
    after = jobs.Job(fn=F.where, name="after").begin()
    assert after.wait(180) and after.status == jobs.DONE, after.error
    assert after.result["pid"] not in (pid,)
    # Nothing of the dead job is left for a later run to mistake: no payload, no progress file.
    assert journal.read(victim.id)["status"] == jobs.FAILED
    assert not journal.payload_path(victim.id).exists() and not journal.progress_path(victim.id).exists()


def test_a_job_that_ignores_cancel_has_its_worker_stopped(fresh, monkeypatch):
    from ui import pool

    monkeypatch.setattr(pool, "CANCEL_GRACE_S", 0.5)
    fresh(process=True)
    job = jobs.Job(fn=F.ignore_cancel, name="deaf").begin()
    pid = _running_in_a_worker(job)
    job.cancel()
    assert job.wait(60)
    assert job.status == jobs.CANCELLED and not _alive(pid)
    follow = jobs.Job(fn=F.count, args=(2,), name="next").begin()  # the slot works on
    assert follow.wait(180) and follow.result == 4


def _retry_script():
    import streamlit as st

    from tests import job_functions
    from ui import jobs as J

    if J.get("slow.count") is None:
        J.start("slow.count", job_functions.count, 30, label="counting", delay=0.2)
    job = J.panel("slow.count", "Counting")
    if job is not None:
        st.write(f"result {job.result}")


def test_a_killed_job_shows_a_message_and_retry_runs_it_again(fresh):
    fresh(process=True)
    at = AppTest.from_function(_retry_script, default_timeout=60)
    at.run()
    job = at.session_state["clsviz.jobs"]["slow.count"]
    os.kill(_running_in_a_worker(job), signal.SIGKILL)
    assert job.wait(60)
    at.run()
    assert not at.exception
    assert any("Counting failed" in e.value and "was killed" in e.value for e in at.error)
    assert not [m for m in at.markdown if "result" in m.value]
    next(b for b in at.button if b.label == "Retry").click()
    at.run()
    again = at.session_state["clsviz.jobs"]["slow.count"]
    assert again is not job and again.wait(180) and again.status == jobs.DONE, again.error
    at.run()
    assert any(m.value == "result 60" for m in at.markdown)


def test_a_killed_shard_run_leaves_no_folder_taken_for_complete_and_resumes(fresh, tiny_encoder, tmp_path):
    from clsviz.extraction import embed_to_shards
    from clsviz.shards import ShardError, open_shards

    fresh(process=True)
    texts = [f"sentence number {i} about the cat and the dog" for i in range(12)]
    out = tmp_path / "shards"
    job = jobs.Job(fn=F.embed_slowly, args=(tiny_encoder, texts, str(out)), name="embed").begin()
    _running_in_a_worker(job)
    assert _wait_for(lambda: job.done >= 4, 180), job.message  # two shards written
    os.kill(job.worker_pid, signal.SIGKILL)
    assert job.wait(60) and job.status == jobs.FAILED and job.retry
    with pytest.raises(ShardError, match="unfinished run"):
        open_shards(out)  # never read as a result
    again = jobs.Job(fn=job.fn, args=job.args, kwargs=job.kwargs, name="embed").begin()  # what Retry starts
    assert again.wait(180) and again.status == jobs.DONE, again.error
    assert again.result >= 4  # it resumed from the shards already written
    whole = embed_to_shards(
        tiny_encoder, Corpus(texts=texts), tmp_path / "direct", poolings=("cls", "mean"), shard_rows=2
    )
    np.testing.assert_array_equal(open_shards(out).get("cls", 2), whole.get("cls", 2))


# --- progress: the share done and the time left --------------------------------------------------


def test_time_left_waits_for_enough_progress_then_follows_the_rate(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(engine, "monotonic", lambda: now[0])
    job = jobs.Job(fn=F.count, name="clock", status=jobs.RUNNING, started=100.0)
    job.report(0, 200, "run 1 of 4, cls: epoch 1/2, step 1/100")
    assert job.seconds_left() is None  # nothing known yet
    now[0] = 101.0
    job.report(2, 200)
    assert job.seconds_left() is None  # 1% in 1 s: too little to go on
    now[0] = 110.0
    job.report(20, 200, "run 1 of 4, cls: epoch 2/2, step 20/100")
    # 10% of the work in 10 s: 90 s left, less the time since that report.
    assert job.seconds_left() == pytest.approx(90.0)
    now[0] = 140.0
    assert job.seconds_left() == pytest.approx(60.0)
    line = jobs.status_line(job)
    assert line == "run 1 of 4, cls: epoch 2/2, step 20/100 · 10% done · about 1 min left"
    now[0] = 400.0
    assert job.seconds_left() == 0.0  # late: never a negative time
    job.status = jobs.DONE
    assert job.seconds_left() is None


@pytest.mark.parametrize("seconds, words", [(3, "a few seconds left"), (43, "about 45 s left"),
                                            (89, "about 1 min left"), (150, "about 2 min left"),
                                            (3720, "about 1 h 02 min left")])  # fmt: skip
def test_time_left_in_words(seconds, words):
    assert engine.time_left_text(seconds) == words


def test_a_running_job_without_an_estimate_says_how_long_it_has_run(monkeypatch):
    monkeypatch.setattr(engine, "monotonic", lambda: 130.0)
    job = jobs.Job(fn=F.count, name="young", status=jobs.RUNNING, started=100.0)
    job.report(1, 10, "step 1")
    assert jobs.status_line(job) == "step 1 · 10% done · 30 s so far"


def test_steps_report_one_progress_across_the_steps():
    from clsviz.progress import Steps

    seen = []
    steps = Steps(
        lambda done, total, message: seen.append((done, total, message)), ["probe", "control task", "MDL"]
    )
    first = steps.step(0)
    first(5, 10)
    steps.step(1)(49, 98, "cell 49")
    steps.step(2)(3, 3)
    assert seen == [(0, 1000, "step 1 of 3 (probe)"), (167, 1000, "step 1 of 3 (probe): 5 of 10"),
                    (333, 1000, "step 2 of 3 (control task)"), (500, 1000, "step 2 of 3 (control task): cell 49"),
                    (667, 1000, "step 3 of 3 (MDL)"), (1000, 1000, "step 3 of 3 (MDL): 3 of 3")]  # fmt: skip
    seen.clear()
    weighted = Steps(
        lambda done, total, message: seen.append(done), ["random tokens", "probe"], weights=[1, 9]
    )
    weighted.step(0)(1, 1)
    weighted.step(1)(35, 70)
    assert seen == [0, 100, 100, 550]  # the first step is a tenth of the work
    with pytest.raises(ValueError, match="at least one step"):
        Steps(None, [])
    with pytest.raises(ValueError, match="one positive weight per step"):
        Steps(None, ["a", "b"], weights=[1])


def test_the_worker_takes_the_torch_threads_the_deployment_sets(fresh, monkeypatch):
    monkeypatch.setenv("CLSVIZ_JOB_THREADS", "1")
    fresh(process=True)
    job = jobs.Job(fn=F.torch_threads, name="threads").begin()
    assert job.wait(180) and job.status == jobs.DONE, job.error
    assert job.result == 1


def test_results_travel_through_shared_memory_and_only_as_results():
    import pickle

    import pandas as pd

    big = np.arange(worker.SHARED_BYTES // 8 + 10, dtype=np.float64)
    result = {"vectors": big, "table": pd.DataFrame({"a": [1, 2]}), "note": "ok"}
    blob, files = worker.pack(result, owner=os.getpid())
    assert files and all(Path(f).exists() for f, _ in files)  # the large array went to shared memory
    back = worker.unpack(blob, files)
    np.testing.assert_array_equal(back["vectors"], big)
    assert back["table"].equals(result["table"]) and back["note"] == "ok"
    assert not any(Path(f).exists() for f, _ in files)  # the shared files are removed at once
    with pytest.raises(pickle.UnpicklingError, match="may not name"):
        worker.unpack(pickle.dumps(os.system), [])  # a global from outside the result packages
    import types

    assert worker.unpack(b"ctypes\nSimpleNamespace\n.", []) is types.SimpleNamespace
    with pytest.raises(pickle.UnpicklingError, match="may not name"):
        worker.unpack(b"ctypes\nCodeType\n.", [])  # builds code objects
    with pytest.raises(pickle.UnpicklingError, match="may not name"):
        worker.unpack(b"cbuiltins\neval\n.", [])
