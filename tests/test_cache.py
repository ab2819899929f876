"""The app's one cache: bounded by bytes, least recently used out first, shared safely, and the
process's memory stays within the budget however many results are asked for (ui/cache.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ui.cache import BudgetCache, nbytes

ROOT = Path(__file__).resolve().parent.parent


def _array(mb: float) -> np.ndarray:
    return np.zeros(int(mb * 1e6) // 4, dtype=np.float32)


def test_eviction_is_by_bytes_least_recently_used_first():
    cache = BudgetCache(10_000_000)
    for key in "abc":
        cache.put(key, _array(3))
    assert len(cache) == 3 and cache.used_bytes == pytest.approx(9e6, rel=0.01) and cache.evictions == 0
    cache.get("a")  # a is now the most recently used
    cache.put("d", _array(3))  # 12 MB > 10 MB: b (least recently used) goes
    assert "b" not in cache and {"a", "c", "d"} <= set(cache.keys()) and cache.evictions == 1
    assert cache.used_bytes <= cache.max_bytes
    # One entry larger than the whole budget is returned to the caller but never kept.
    assert cache.put("huge", _array(20)) is False and "huge" not in cache and cache.too_large == 1
    assert cache.get_or_compute("huge", lambda: _array(20)).nbytes == 20_000_000
    assert "huge" not in cache


def test_concurrent_callers_compute_once_and_failures_are_not_kept():
    cache = BudgetCache(10_000_000)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return _array(1)

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_compute("k", slow))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 4 and all(r is results[0] for r in results)

    def broken():
        raise ValueError("no")

    with pytest.raises(ValueError):
        cache.get_or_compute("bad", broken)
    assert "bad" not in cache
    assert cache.get_or_compute("bad", lambda: 7) == 7


def test_sizes_count_what_results_hold(encoder):
    from clsviz import trace
    from clsviz.tracing import trace_bytes

    t = trace(encoder, "The film was not bad at all.")
    arrays = t.attentions.nbytes + t.hidden_states.nbytes + t.pooler_states.nbytes
    assert arrays <= nbytes(t) <= arrays * 1.05 + 20_000
    assert trace_bytes(encoder.info, t.seq_len) == pytest.approx(nbytes(t), rel=0.05)
    import pandas as pd

    frame = pd.DataFrame({"x": np.arange(100_000, dtype=np.float64)})
    assert nbytes(frame) >= 800_000
    assert nbytes({"a": _array(1), "b": [_array(1), _array(1)]}) >= 3_000_000


_FILL = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from clsviz import load_encoder, trace
from ui.cache import cached, shared_cache

def rss():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))

enc = load_encoder()
words = "the cat chased a dog across every field while model attention layer tokens watched".split()
texts = [" ".join(words[(i + j) % len(words)] for j in range(200)) + f" number {i}" for i in range(28)]
trace(enc, texts[-1], max_tokens=256)  # warm the allocator and the model once, outside the cache
before = rss()
peak = before
for text in texts:
    cached("trace", (text,), lambda text=text: trace(enc, text, max_tokens=256))
    peak = max(peak, rss())
cache = shared_cache()
first_again = cached("trace", (texts[0],), lambda: trace(enc, texts[0], max_tokens=256))
fresh = trace(enc, texts[0], max_tokens=256)
print(json.dumps({
    "before": before, "peak": peak, "used": cache.used_bytes, "budget": cache.max_bytes,
    "entries": len(cache), "misses": cache.misses, "hits": cache.hits,
    "equal": bool(np.array_equal(first_again.attentions, fresh.attentions)
                  and np.array_equal(first_again.hidden_states, fresh.hidden_states)),
}))
"""


def _fill(budget_mb: int) -> dict:
    env = {**os.environ, "CLSVIZ_CACHE_MB": str(budget_mb), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _FILL, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_process_stays_within_the_budget_and_evicted_results_come_back_right():
    bounded = _fill(120)
    grew = bounded["peak"] - bounded["before"]
    assert bounded["used"] <= bounded["budget"] == 120_000_000
    assert bounded["entries"] < 28  # most of the 28 traces (about 20 MB each) were evicted
    assert grew <= bounded["budget"] + 60_000_000, f"RSS grew by {grew / 1e6:.0f} MB past a 120 MB budget"
    # The first trace was evicted, computed again when asked for, and equals a fresh one.
    assert bounded["misses"] == 29 and bounded["hits"] == 0 and bounded["equal"]
    # The same requests without a budget hold every trace: the bound above is the cache's doing.
    unbounded = _fill(100_000)
    assert unbounded["entries"] == 28
    assert unbounded["peak"] - unbounded["before"] > 3 * bounded["budget"]


def test_one_request_may_fill_only_a_quarter_of_the_budget(monkeypatch, encoder):
    """Sentences beyond a quarter of the budget are not traced, and the page says so."""
    from clsviz import trace
    from clsviz.tracing import trace_bytes
    from tests.conftest import open_page

    sentences = [f"Sentence number {i} is about the weather in a small town by the sea." for i in range(8)]
    one = trace_bytes(encoder.info, trace(encoder, sentences[0]).seq_len)
    # A budget whose quarter holds three of these traces but not four.
    monkeypatch.setenv("CLSVIZ_CACHE_MB", str(4 * 3.5 * one / 1e6))
    at = open_page("pages/1_Attention.py", sentences="\n".join(sentences))
    warning = next(w.value for w in at.warning if "not traced" in w.value)
    assert "Sentences 4–8 were not traced" in warning and "CACHE" in warning and "Max tokens" in warning
    assert len(at.selectbox(key="attention.sentence").options) == 3
