"""Inputs the benchmarks share: the demo texts, a corpus of 128-256-token texts built from them,
sentences of an exact token count, sentences no cache has seen, and a saved bert-base-sized
model in a temporary folder (deleted afterwards)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "ROOT",
    "bert_base_folder",
    "demo_texts",
    "fresh_sentence",
    "long_texts",
    "sentence_of",
    "tokenizer",
]

WORDS = (
    "amber birch cobalt delta ember fjord granite harbor indigo juniper kelp lagoon meadow nectar "
    "orchid pebble quartz river saffron tundra umber violet willow yarrow zephyr the a of and quiet "
    "loud old new small large city rain music film garden market street school night morning"
).split()


@lru_cache(maxsize=1)
def tokenizer():
    """The bundled model's tokenizer (token counts are the model's, computed here)."""
    from transformers import AutoTokenizer

    from clsviz.encoder import bundled_model_path

    return AutoTokenizer.from_pretrained(str(bundled_model_path()))


def demo_texts(n: int | None = None) -> list[str]:
    """The demo corpus's texts (all, or the first ``n``, cycling when ``n`` is larger)."""
    from clsviz.corpus import demo_corpus

    texts = list(demo_corpus().texts)
    if n is None:
        return texts
    return [texts[i % len(texts)] for i in range(n)]


def long_texts(n: int, low: int = 128, high: int = 256, seed: int = 0) -> list[str]:
    """``n`` texts of ``low``..``high`` tokens (special tokens included), each demo sentences
    joined in a seeded order; every length in the range is equally likely."""
    import numpy as np

    tok = tokenizer()
    demo = demo_texts()
    lengths = [len(ids) for ids in tok(demo, add_special_tokens=False)["input_ids"]]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        goal = int(rng.integers(low, high + 1)) - 2  # a length to reach, room left for [CLS] and [SEP]
        parts, total = [], 0
        for j in rng.permutation(len(demo)):
            if total + lengths[j] <= high - 2:
                parts.append(demo[j])
                total += lengths[j]
            if total >= goal:
                break
        out.append(" ".join(parts))
    counts = [len(ids) for ids in tok(out)["input_ids"]]
    bad = [c for c in counts if not low <= c <= high]
    if bad:
        raise RuntimeError(f"long_texts built {len(bad)} texts outside {low}..{high} tokens (e.g. {bad[:3]})")
    return out


def sentence_of(num_tokens: int, seed: int = 0) -> str:
    """A text the bundled tokenizer turns into exactly ``num_tokens`` tokens (specials included),
    different for each ``seed``."""
    tok = tokenizer()

    def count(words):
        return len(tok(" ".join(words))["input_ids"])

    words = [f"run{seed}"]
    i = seed * 7
    while count(words) < num_tokens:
        words.append(WORDS[i % len(WORDS)])
        i += 3
    while count(words) > num_tokens:
        words.pop()
    while count(words) < num_tokens:
        words.append("a")
    return " ".join(words)


def fresh_sentence(i: int, words: int = 9) -> str:
    """Sentence number ``i`` of a sequence in which no two are the same (nothing from a cache)."""
    picks = [WORDS[(i * 7 + k * 5) % len(WORDS)] for k in range(words)]
    return f"Take {i}: the {' '.join(picks)}."


_BUILD = (
    "import sys, torch; from transformers import AutoTokenizer, BertConfig, BertModel;"
    "from clsviz.encoder import bundled_model_path; torch.manual_seed(0);"
    "BertModel(BertConfig()).save_pretrained(sys.argv[1]);"
    "AutoTokenizer.from_pretrained(str(bundled_model_path())).save_pretrained(sys.argv[1])"
)


@contextmanager
def bert_base_folder() -> Iterator[Path]:
    """A saved BertModel with bert-base's configuration (12 layers, 12 heads, 768 dims, random
    weights) and the bundled tokenizer (the same vocabulary) in a temporary folder, built by a
    separate process; the folder is deleted on exit."""
    folder = Path(tempfile.mkdtemp(prefix="clsviz-bert-base-"))
    try:
        subprocess.run([sys.executable, "-c", _BUILD, str(folder)], cwd=ROOT, check=True, capture_output=True,
                       text=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
