"""ui.preload and ui.serve: the bundled model loads while the server starts, is handed to the
first page once, and a failed or absent preload leaves the page to load the model itself."""

from __future__ import annotations

import sys
import threading

import pytest

import clsviz
from ui import preload, serve


@pytest.fixture(autouse=True)
def fresh_preload(monkeypatch):
    monkeypatch.delenv(preload.ENV, raising=False)
    preload._state.clear()
    preload._done.clear()
    yield
    thread = preload._state.get("thread")
    if thread is not None:
        thread.join(timeout=30)
    preload._state.clear()
    preload._done.clear()


def test_nothing_started_means_nothing_to_take():
    assert preload.take(timeout=0) is None
    assert preload.error() is None


def test_take_waits_for_the_load_and_hands_the_encoder_over_once(monkeypatch):
    release, calls = threading.Event(), []
    sentinel = object()

    def slow_load(*args, **kwargs):
        calls.append((args, kwargs))
        release.wait(10)
        return sentinel

    monkeypatch.setattr(clsviz, "load_encoder", slow_load)
    thread = preload.start()
    assert preload.start() is thread  # once per process
    assert preload.take(timeout=0.05) is None  # still loading: a bounded wait gives up
    release.set()
    assert preload.take() is sentinel
    assert preload.take() is None  # handed over: the resource cache owns it now
    assert calls == [((), {})]  # the bundled model, as the page would load it


def test_a_failed_preload_leaves_the_loading_to_the_page(monkeypatch):
    def broken(*args, **kwargs):
        raise clsviz.ModelLoadError("the bundled model is not installed")

    monkeypatch.setattr(clsviz, "load_encoder", broken)
    preload.start().join(10)
    assert preload.take() is None
    assert "not installed" in preload.error()


def test_the_preload_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(preload.ENV, "0")
    assert preload.start() is None and preload.take(timeout=0) is None


def test_the_cached_encoder_takes_the_preloaded_model(monkeypatch):
    from ui import state

    sentinel = object()
    monkeypatch.setattr(clsviz, "load_encoder", lambda *a, **k: sentinel)
    monkeypatch.setattr(
        state, "load_encoder", lambda *a, **k: pytest.fail("the preloaded model was not used")
    )
    preload.start().join(10)
    state.cached_encoder.clear()
    try:
        assert state.cached_encoder(state.DEFAULT_MODEL) is sentinel
    finally:
        state.cached_encoder.clear()


def test_serve_starts_the_preload_then_streamlit_run_on_the_app(monkeypatch):
    from streamlit.web import cli

    seen = {}
    monkeypatch.setattr(preload, "start", lambda: seen.setdefault("preload", True))
    monkeypatch.setattr(cli, "main", lambda prog_name: seen.update(argv=list(sys.argv), prog=prog_name))
    monkeypatch.setattr(sys, "argv", ["serve"])
    monkeypatch.chdir("/")
    serve.main(["--server.port", "9999"])
    assert seen["preload"] and seen["prog"] == "streamlit"
    assert seen["argv"] == ["streamlit", "run", str(serve.APP), "--server.port", "9999"]
    assert serve.APP.name == "app.py" and serve.APP.is_file()
