"""``python -m clsviz``: the same command line as the ``clsviz`` entry point."""

import sys

from .cli import main

sys.exit(main())
