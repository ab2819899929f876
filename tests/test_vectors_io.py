"""Saving PooledVectors to .npz / .parquet and loading them back, exactly."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from clsviz import extract
from clsviz.vectors import PooledVectors
from clsviz.vectors_io import VECTOR_FORMATS, as_corpus, load_vectors, save_vectors


def _synthetic(labels: dict | None = None) -> PooledVectors:
    rng = np.random.default_rng(7)
    texts = ("The cat sat.", "A <b>bold</b> claim & more", "ünïcödé — 😀", "tab\there\nnewline")
    return PooledVectors(
        vectors=rng.normal(size=(4, 3, 2, 5)).astype(np.float32),
        poolings=("cls", "token:2"),
        texts=texts,
        model_name="some/model",
        truncated=np.array([False, True, False, False]),
        labels=labels
        if labels is not None
        else {
            "topic": ("animals", "claims", "", "misc"),
            "score": (1, 2, 3, 4),
            "mixed": (1, "a", 2.5, None),
            "flag": (True, False, True, False),
            "text": ("a label called text", "b", "c", "d"),
        },
    )


def _assert_same(a: PooledVectors, b: PooledVectors) -> None:
    assert a.vectors.dtype == b.vectors.dtype == np.float32
    assert a.vectors.shape == b.vectors.shape
    assert np.array_equal(a.vectors, b.vectors)
    assert a.poolings == b.poolings
    assert a.texts == b.texts
    assert a.model_name == b.model_name
    assert np.array_equal(a.truncated, b.truncated) and b.truncated.dtype == bool
    assert list(a.labels) == list(b.labels)
    for name, values in a.labels.items():
        got = b.labels[name]
        assert isinstance(got, tuple)
        assert list(got) == list(values)
        # Same Python types too: 1 stays an int, "1" stays a string.
        assert [type(v) for v in got] == [type(v) for v in values]


@pytest.mark.parametrize("ending", VECTOR_FORMATS)
def test_round_trip_is_exact(tmp_path, ending):
    pv = _synthetic()
    path = save_vectors(pv, tmp_path / f"vectors{ending}")
    assert path.is_file() and path.suffix == ending
    _assert_same(pv, load_vectors(path))
    _assert_same(pv, load_vectors(str(path)))
    _assert_same(pv, load_vectors(path.read_bytes()))
    with open(path, "rb") as fh:
        _assert_same(pv, load_vectors(fh))


@pytest.mark.parametrize("ending", VECTOR_FORMATS)
def test_round_trip_of_extracted_vectors(tmp_path, tiny_encoder, ending):
    texts = ["the cat chased a dog", "why is the token always first", "a"]
    pv = extract(tiny_encoder, texts, poolings=("cls", "mean", "max"), labels={"kind": ("x", "y", "x")})
    back = load_vectors(save_vectors(pv, tmp_path / f"v{ending}"))
    _assert_same(pv, back)
    for pooling in pv.poolings:
        assert np.array_equal(back.get(pooling, 1), pv.get(pooling, 1))


def test_numpy_label_values_are_saved_as_python_values(tmp_path):
    pv = _synthetic({"n": tuple(np.arange(4)), "f": tuple(np.linspace(0, 1, 4, dtype=np.float32))})
    for ending in VECTOR_FORMATS:
        back = load_vectors(save_vectors(pv, tmp_path / f"v{ending}"))
        assert back.labels["n"] == (0, 1, 2, 3)
        assert back.labels["f"] == tuple(float(v) for v in np.linspace(0, 1, 4, dtype=np.float32))


def test_parquet_is_a_readable_table(tmp_path):
    import pandas as pd

    pv = _synthetic()
    path = save_vectors(pv, tmp_path / "v.parquet")
    frame = pd.read_parquet(path)
    assert list(frame["text"]) == list(pv.texts)
    assert list(frame["topic"]) == list(pv.labels["topic"])
    assert list(frame["label:text"]) == list(pv.labels["text"])  # renamed: "text" holds the texts
    first = np.asarray(frame["vectors"].iloc[1], dtype=np.float32)
    assert np.array_equal(first, pv.vectors[1].reshape(-1))


def test_npz_holds_no_pickles(tmp_path):
    path = save_vectors(_synthetic(), tmp_path / "v.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {"vectors", "truncated", "meta"}
        meta = json.loads(str(npz["meta"]))
    assert meta["poolings"] == ["cls", "token:2"]


def test_bad_file_names_and_label_values(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz or \.parquet"):
        save_vectors(_synthetic(), tmp_path / "v.csv")
    with pytest.raises(ValueError, match="cannot be saved"):
        save_vectors(_synthetic({"obj": (object(), 1, 2, 3)}), tmp_path / "v.npz")
    with pytest.raises(ValueError, match="3 values for 4 texts"):
        save_vectors(_synthetic({"short": (1, 2, 3)}), tmp_path / "v.npz")


def test_files_that_are_not_vectors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_vectors(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="not a clsviz vectors file"):
        load_vectors(b"text,label\nhello,1\n")
    buffer = io.BytesIO()
    np.savez(buffer, something=np.zeros(3))
    with pytest.raises(ValueError, match="missing: meta, truncated, vectors"):
        load_vectors(buffer.getvalue())
    with pytest.raises(ValueError, match="could not be read"):
        load_vectors(b"PK\x03\x04 broken zip")

    import pandas as pd

    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"text": ["a"]}).to_parquet(plain)
    with pytest.raises(ValueError, match="no 'clsviz' metadata"):
        load_vectors(plain)


def test_size_limit_is_checked_before_unpacking(tmp_path):
    pv = PooledVectors(
        vectors=np.zeros((50, 3, 2, 64), dtype=np.float32),  # 76.8 kB unpacked, tiny compressed
        poolings=("cls", "mean"),
        texts=tuple(f"t{i}" for i in range(50)),
        model_name="m",
        truncated=np.zeros(50, dtype=bool),
    )
    for ending in VECTOR_FORMATS:
        path = save_vectors(pv, tmp_path / f"v{ending}")
        with pytest.raises(ValueError, match="the limit is"):
            load_vectors(path, max_bytes=10_000)
        assert load_vectors(path, max_bytes=10_000_000).vectors.shape == (50, 3, 2, 64)
    with zipfile.ZipFile(tmp_path / "v.npz") as zf:
        assert zf.getinfo("vectors.npy").compress_size < 10_000


def test_saved_vectors_as_a_corpus(tmp_path):
    pv = load_vectors(save_vectors(_synthetic(), tmp_path / "v.npz"))
    corpus = as_corpus(pv)
    assert corpus.texts == pv.texts
    assert corpus.labels["score"] == ("1", "2", "3", "4")
    assert corpus.labels["mixed"] == ("1", "a", "2.5", "")
    assert corpus.name == "saved vectors (some/model)"
    assert "cls, token:2" in corpus.messages[0]


def test_vectors_upload_widget(tmp_path):
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        import streamlit as st

        from ui.vectors import vectors_uploader

        pv = vectors_uploader("test.vectors")
        st.text(
            "none" if pv is None else f"loaded {len(pv.texts)} {pv.vectors.sum():.5f} {','.join(pv.labels)}"
        )

    pv = _synthetic()
    data = save_vectors(pv, tmp_path / "v.parquet").read_bytes()
    at = AppTest.from_function(page, default_timeout=60)
    at.run()
    assert not at.exception and at.text[-1].value == "none"
    at.file_uploader[0].set_value(("v.parquet", data, "application/octet-stream")).run()
    assert not at.exception and not at.error
    assert at.text[-1].value == f"loaded 4 {pv.vectors.sum():.5f} {','.join(pv.labels)}"
    assert any("4 texts from some/model" in t.value for t in at.text)
    at.file_uploader[0].set_value(("v.npz", b"PK\x03\x04 not really", "application/octet-stream")).run()
    assert not at.exception
    assert at.error and at.text[-1].value == "none"
    assert any("could not be read" in t.value for t in at.text)


def test_a_failed_save_leaves_no_file(tmp_path, monkeypatch):
    import clsviz.vectors_io as vio

    def broken(pv, labels, path):
        path.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(vio, "_save_npz", broken)
    with pytest.raises(OSError, match="disk full"):
        save_vectors(_synthetic(), tmp_path / "v.npz")
    assert list(tmp_path.iterdir()) == []
