"""The token limit has one name, max_tokens; the old max_length still works on the public entry
points, with a DeprecationWarning (clsviz/keywords.py)."""

from __future__ import annotations

import numpy as np
import pytest

from clsviz import extract, trace

TEXT = "one two three four five six seven eight nine ten"


def test_the_old_keyword_gives_the_same_result_and_says_it_is_old(tiny_encoder):
    new = trace(tiny_encoder, TEXT, max_tokens=6)
    with pytest.warns(DeprecationWarning, match=r"trace\(max_tokens=\.\.\.\)"):
        old = trace(tiny_encoder, TEXT, max_length=6)
    assert new.seq_len == old.seq_len == 6 and new.truncated
    np.testing.assert_array_equal(new.hidden_states, old.hidden_states)
    with pytest.warns(DeprecationWarning):
        pv = extract(tiny_encoder, [TEXT], ("cls",), max_length=6)
    np.testing.assert_allclose(pv.vectors[0, :, 0], new.hidden_states[:, 0], atol=1e-5)
    assert tiny_encoder.info.max_length == tiny_encoder.info.max_tokens


def test_both_names_at_once_is_refused(tiny_encoder):
    with pytest.raises(TypeError, match="max_length is the old name"):
        trace(tiny_encoder, TEXT, max_tokens=6, max_length=6)
