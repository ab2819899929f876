"""The shared encoder under concurrent use, as the app's sessions use it: many threads tracing
and extracting at once get exactly what they would get alone, and the model is never changed.

(The same property end to end, eight browser sessions on one server, is in
tests/browser/test_concurrent.py.)
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from clsviz import extract, trace

TEXTS = [
    "The cat chased the dog across the yard.",
    "Why is the [CLS] token always first?",
    "Stock markets fell sharply after the announcement.",
    "A long sentence " + "that keeps going and going " * 30 + "until it is cut.",
    "Short.",
    "Rain is expected over the mountains tomorrow afternoon.",
    "<b>markup</b> and [SEP] literal tokens",
    "The film was not bad at all.",
]
# Different truncation lengths on purpose: a fast tokenizer whose truncation settings change
# between concurrent calls is where thread-safety problems would show up.
MAX_LENGTHS = [16, 32, 128]


def _weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_concurrent_traces_and_extraction_match_sequential_runs(encoder):
    jobs = [(text, n) for text in TEXTS for n in MAX_LENGTHS]
    alone = {job: trace(encoder, job[0], max_tokens=job[1]) for job in jobs}
    vectors_alone = extract(encoder, TEXTS, ("cls", "mean"), batch_size=3)
    before = _weights_digest(encoder.model)

    def run(job):
        if job == "extract":
            return extract(encoder, TEXTS, ("cls", "mean"), batch_size=3)
        return trace(encoder, job[0], max_tokens=job[1])

    work = [*jobs, "extract", *reversed(jobs), "extract"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, work))

    for job, got in zip(work, results):
        if job == "extract":
            np.testing.assert_allclose(got.vectors, vectors_alone.vectors, atol=1e-5)
            continue
        want = alone[job]
        assert got.tokens == want.tokens and got.truncated == want.truncated
        assert got.seq_len <= job[1]
        np.testing.assert_allclose(got.attentions, want.attentions, atol=1e-5)
        np.testing.assert_allclose(got.hidden_states, want.hidden_states, atol=1e-5)
    # Nobody changed the shared model (both views share these tensors).
    assert _weights_digest(encoder.model) == before
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert not encoder.model.training and not encoder.eager_model.training
