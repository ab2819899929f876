#!/usr/bin/env bash
# Install the lab corpus: Jane Austen's six novels (public domain), from Debian's r-cran-janeaustenr.
# Only that one package is downloaded (apt-get download, 1.6 MB) and unpacked into a temporary folder;
# nothing is installed system-wide and R is not needed. The text is written, as running text with
# chapter boundaries, to $CLSVIZ_CORPORA_DIR/austen.txt (default ~/.cache/clsviz/corpora).
# Usage: scripts/ensure-lab-corpus.sh [PYTHON]
set -eu
PY="${1:-python3}"
if "$PY" -c "from clsviz.lab.books import austen_path; import sys; sys.exit(0 if austen_path().is_file() else 1)"; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get is not available: install the lab corpus by hand (see clsviz/data/README.md) or pass --corpus." >&2
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "Downloading Debian's r-cran-janeaustenr (Jane Austen's novels, 1.6 MB) for the lab corpus..."
(cd "$work" && apt-get download -qq r-cran-janeaustenr 2>/dev/null) || {
    [ "$(id -u)" = "0" ] && apt-get update -qq >/dev/null && (cd "$work" && apt-get download -qq r-cran-janeaustenr)
} || { echo "Could not download r-cran-janeaustenr with apt-get download." >&2; exit 1; }
dpkg -x "$work"/r-cran-janeaustenr_*.deb "$work/root"
"$PY" -c "import sys; from clsviz.lab.books import install_austen; print('Lab corpus:', install_austen(sys.argv[1]))" "$work/root"
