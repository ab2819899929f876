"""``python -m ui.serve [streamlit options]``: the app's server, as ``make run`` and the Docker
image start it.

It is ``streamlit run app.py`` with one addition: the bundled model starts loading in the
background (:mod:`ui.preload`) as the server starts, so a person who opens the page a few
seconds later does not wait for torch, transformers and the weights. Options after the module name go
to ``streamlit run`` unchanged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app.py"


def main(argv: list[str] | None = None) -> None:
    # Streamlit first, in this thread: on import it builds plotly objects, and plotly looks up
    # pandas and numpy in sys.modules without importing them, so it must not run while the
    # preload thread is half-way through importing those.
    from streamlit.web import cli

    from ui import preload

    os.chdir(APP.parent)
    preload.start()

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
