"""``clsviz app``: start the Streamlit app from a source checkout."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from .common import EXIT_OK, add_command, add_common, positive_int, status

__all__ = ["cmd_app", "find_app", "register"]


def find_app() -> Path | None:
    """The app's entry file (``app.py`` beside the ``clsviz`` package in a source checkout)."""
    override = os.environ.get("CLSVIZ_APP")
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parents[2] / "app.py")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def cmd_app(args) -> int:
    """Start the clsviz Streamlit app as `make run` does (python -m ui.serve: streamlit run app.py,
    the bundled model preloading). Arguments after '--' go to streamlit unchanged.
    """
    if importlib.util.find_spec("streamlit") is None:
        raise RuntimeError(
            "the app needs Streamlit, which is not installed: pip install 'clsviz[app]' "
            "(or pip install -r requirements.txt)"
        )
    app = find_app()
    if app is None:
        raise RuntimeError(
            "app.py was not found beside the clsviz package; the app runs from a source checkout "
            "(git clone, then 'make run'), or set CLSVIZ_APP to the path of app.py"
        )
    # The checkout's launcher, as `make run` uses it: streamlit run app.py with the bundled model
    # loading while the server starts (ui/serve.py); a bare app.py (CLSVIZ_APP) runs as it is.
    launcher = ["-m", "ui.serve"] if (app.parent / "ui" / "serve.py").is_file() else ["-m", "streamlit", "run", str(app)]
    command = [sys.executable, *launcher, "--server.port", str(args.port)]
    if args.address:
        command += ["--server.address", args.address]
    if args.headless:
        command += ["--server.headless", "true"]
    command += [a for a in args.streamlit_args if a != "--"]
    status(args, f"Starting the app on http://{args.address or 'localhost'}:{args.port} (Ctrl+C stops it)…")
    process = subprocess.Popen(command, cwd=str(app.parent))

    def stop(signum, frame):
        # Pass a termination request on, so the server never outlives this command.
        process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return process.wait()
    except KeyboardInterrupt:  # Ctrl+C reaches streamlit too; wait for it to finish
        process.wait()
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(sub) -> None:
    """Add the ``app`` command to the subparsers ``sub``."""
    p = add_command(sub, "app", cmd_app, "start the Streamlit app")
    p.add_argument("--port", type=positive_int, default=8501, help="port to serve on (default: 8501)")
    p.add_argument("--address", default=None, help="address to bind (default: streamlit's)")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="extra streamlit options, after '--'")
    add_common(p)
