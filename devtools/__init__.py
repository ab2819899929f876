"""Tools for developing clsviz, shared by the test suite and the benchmarks: starting the app
server and driving Debian's Chromium (:mod:`devtools.browser`). Not part of the installed package."""
