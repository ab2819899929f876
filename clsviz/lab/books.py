"""The lab's real corpus: Jane Austen's six novels, read into running text with chapter boundaries.

The novels are in the public domain; Debian ships them in the package ``r-cran-janeaustenr``
(packaging MIT, text from Project Gutenberg), stored as R data. ``make lab-corpus`` (called by
``make lab``) runs ``scripts/ensure-lab-corpus.sh``, which downloads that one package with
``apt-get download`` (no R, nothing installed system-wide), unpacks it and calls
:func:`install_austen`, which writes ``austen.txt`` into :func:`corpora_dir`. The tests and a fresh
install without it use :func:`excerpt_texts`, the first chapters of *Pride and Prejudice* shipped in
``clsviz/data/austen_excerpt.txt`` (see ``clsviz/data/README.md``).

Running-text files hold one paragraph per line and an empty line between documents (chapters):
:func:`read_running_text` returns that as the list of strings :func:`clsviz.lab.pretrain` takes
(``""`` marks a document boundary).
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
import zlib
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from ..artifacts import atomic_path

__all__ = [
    "AUSTEN_BOOKS",
    "CORPORA_DIR_ENV",
    "CorpusMissing",
    "austen_path",
    "book_chapters",
    "corpora_dir",
    "excerpt_texts",
    "install_austen",
    "lab_texts",
    "read_running_text",
    "write_running_text",
]

CORPORA_DIR_ENV = "CLSVIZ_CORPORA_DIR"
"""Environment variable: the folder the lab corpus is installed into (default ``~/.cache/clsviz/corpora``)."""

AUSTEN_BOOKS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")
"""The R objects of ``r-cran-janeaustenr``, in order of publication."""

_HEADING = re.compile(r"^\s*(chapter|volume)\s+([ivxlc]+|\d+)\b\.?\s*$", re.IGNORECASE)
_END = re.compile(r"^\s*(the\s+end|finis)\W*$", re.IGNORECASE)


class CorpusMissing(FileNotFoundError):
    """The full lab corpus is not installed; the message says how to install it."""


def corpora_dir() -> Path:
    """Where lab corpora live: ``$CLSVIZ_CORPORA_DIR`` or ``~/.cache/clsviz/corpora``."""
    override = os.environ.get(CORPORA_DIR_ENV, "").strip()
    return Path(override).expanduser() if override else Path.home() / ".cache" / "clsviz" / "corpora"


def austen_path() -> Path:
    """The installed Austen corpus file (it may not exist yet)."""
    return corpora_dir() / "austen.txt"


def _paragraph(lines: list[str]) -> str:
    # Italics are marked _like this_ in the Gutenberg text; the underscores are not words.
    return re.sub(r"\s+", " ", " ".join(lines).replace("_", "")).strip()


def book_chapters(lines: Iterable[str]) -> list[list[str]]:
    """The chapters of one book as lists of paragraphs, from its text lines (wrapped prose, blank
    lines between paragraphs, headings such as ``CHAPTER IV`` or ``Chapter 4`` on a line of their
    own). What comes before the first chapter (title, preface) and volume headings are left out."""
    chapters: list[list[str]] = []
    current: list[str] | None = None
    para: list[str] = []

    def close() -> None:
        if current is not None and para:
            current.append(_paragraph(para))
        para.clear()

    for raw in lines:
        line = str(raw).rstrip()
        heading = _HEADING.match(line)
        if heading:
            close()
            if heading.group(1).lower() == "chapter":
                current = []
                chapters.append(current)
        elif _END.match(line):
            close()
        elif line.strip():
            para.append(line.strip())
        else:
            close()
    close()
    return [c for c in chapters if c]


def write_running_text(documents: Sequence[Sequence[str]], path: Path) -> Path:
    """Write documents (lists of paragraphs) as running text: one paragraph per line, an empty line
    between documents; atomically (a crash leaves no half-written file). Returns ``path``."""
    body = "\n\n".join("\n".join(p.replace("\n", " ") for p in doc) for doc in documents if doc) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return path


def read_running_text(path) -> list[str]:
    """Paragraphs of a running-text file, with ``""`` between documents (the form
    :func:`clsviz.lab.pretrain` takes)."""
    texts: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line or (texts and texts[-1] != ""):
            texts.append(line)
    while texts and texts[-1] == "":
        texts.pop()
    return texts


def excerpt_texts() -> list[str]:
    """The shipped excerpt: the first chapters of *Pride and Prejudice* as running text."""
    with resources.as_file(resources.files("clsviz.data") / "austen_excerpt.txt") as path:
        return read_running_text(path)


def _r_objects(data_folder: Path) -> dict:
    """Every object of an R package's lazy-load data base (``Rdata.rdx`` + ``Rdata.rdb``)."""
    import rdata  # optional (requirements-dev.txt): only installing the corpus reads R data

    def load(raw: bytes):
        with warnings.catch_warnings():  # the records carry no file header: rdata says it assumed RDS
            warnings.simplefilter("ignore", UserWarning)
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    index = load(gzip.decompress((data_folder / "Rdata.rdx").read_bytes()))
    blob = (data_folder / "Rdata.rdb").read_bytes()
    out = {}
    for name, (offset, length) in index["variables"].items():
        # Each record: a 4-byte length, then the zlib-compressed serialised object.
        out[str(name)] = load(zlib.decompress(blob[int(offset) + 4 : int(offset) + int(length)]))
    return out


def install_austen(package_root, path: Path | None = None) -> Path:
    """Convert the unpacked Debian package ``r-cran-janeaustenr`` (``package_root`` is the folder
    ``dpkg -x`` wrote) into the running-text file :func:`austen_path` (or ``path``). Returns it."""
    data = Path(package_root) / "usr/lib/R/site-library/janeaustenr/data"
    if not (data / "Rdata.rdb").is_file():
        raise CorpusMissing(f"No janeaustenr data under '{data}': unpack the Debian package r-cran-janeaustenr there.")
    objects = _r_objects(data)
    missing = [b for b in AUSTEN_BOOKS if b not in objects]
    if missing:
        raise CorpusMissing(f"The janeaustenr data lacks {', '.join(missing)}; found {', '.join(objects)}.")
    documents = [chapter for book in AUSTEN_BOOKS for chapter in book_chapters(objects[book])]
    target = Path(path) if path is not None else austen_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_running_text(documents, target)


def lab_texts(allow_excerpt: bool = True) -> tuple[list[str], str]:
    """(texts, description) of the lab corpus: the installed Austen novels, else (when
    ``allow_excerpt``) the shipped excerpt, else :class:`CorpusMissing` saying how to install it."""
    path = austen_path()
    if path.is_file():
        texts = read_running_text(path)
        return texts, f"Jane Austen's six novels ({sum(1 for t in texts if not t) + 1} chapters, public domain)"
    if not allow_excerpt:
        raise CorpusMissing(
            f"The lab corpus is not installed at '{path}'. Run 'make lab-corpus' (it downloads the Debian package "
            "r-cran-janeaustenr, 1.6 MB) or pass your own running text."
        )
    texts = excerpt_texts()
    return texts, (
        f"an excerpt of Pride and Prejudice ({sum(1 for t in texts if not t) + 1} chapters, public domain; "
        "run 'make lab-corpus' for all six novels)"
    )
