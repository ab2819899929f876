"""A 100,000-row shard folder (vectors generated here, not embedded) opens on the Embeddings,
probe and inversion pages; paths outside the data directory and damaged folders are refused."""

from __future__ import annotations

import base64
import html
import json
import tempfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from clsviz.artifacts import INCOMPLETE_MARKER
from clsviz.extraction import save_shards
from clsviz.vectors import PooledVectors
from tests.conftest import open_page
from ui.state import OTHER
from ui.vectors import DATA_DIR_ENV, FOLDER_PATH, FOLDER_UPLOAD

ROWS, CHUNK, DIM, LAYERS = 100_000, 25_000, 32, 2
TOPICS = np.array(["sport", "food", "<b>music</b>"])


def _chunks(model_name: str):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, DIM))
    for start in range(0, ROWS, CHUNK):
        y = rng.integers(0, 3, CHUNK)
        vectors = (centres[y][:, None, None, :] + rng.normal(size=(CHUNK, LAYERS + 1, 2, DIM))).astype(np.float32)
        texts = tuple(f"<i>sentence</i> {start + i} about {TOPICS[y[i]]}" for i in range(CHUNK))
        yield PooledVectors(vectors=vectors, poolings=("cls", "mean"), texts=texts, model_name=model_name,
                            truncated=np.zeros(CHUNK, dtype=bool), labels={"topic": tuple(TOPICS[y])})


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("data")
    save_shards(_chunks(tiny_encoder.name), root / "big", rows=ROWS)
    return root


@pytest.fixture(autouse=True)
def _data_dir(data_root, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(data_root))
    monkeypatch.setenv("CLSVIZ_UMAP_WARMUP", "0")


def _points(x) -> int:
    """How many values a plotly array holds (a list, or numpy's base64 "bdata" encoding)."""
    if isinstance(x, dict):
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"])).size
    return len(x)


def _state(model_dir, prefix: str, path: str, **more) -> dict:
    from ui.embeddings import SAVED

    return {"clsviz.model": OTHER, "clsviz.custom_model": str(model_dir), f"{prefix}.source": SAVED,
            f"{prefix}.vectors.kind": FOLDER_PATH, f"{prefix}.vectors.path": path, **more}


def test_the_embeddings_page_opens_100k_rows(tiny_model_dirs):
    at = open_page("pages/3_Embeddings.py", sentences="A typed sentence.",
                   **_state(tiny_model_dirs["bert"], "embeddings.corpus", "big", **{"embeddings.method": "PCA"}))
    assert not at.error
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    title = spec["layout"]["title"]["text"]
    assert "PCA of 100,000 texts after layer 2" in title and "fitted on a sample of 20,000" in title
    corpus = [t for t in spec["data"] if t["name"] != "your sentences"]
    assert {t["type"] for t in corpus} == {"scattergl"}
    assert {t["name"] for t in corpus} == {html.escape(t, quote=False) for t in TOPICS}  # colour by label
    assert sum(_points(t["x"]) for t in corpus) == 2 * ROWS  # the [CLS] and mean panels: every row drawn
    hover = corpus[0]["hovertext"][0]
    assert "&lt;i&gt;sentence&lt;/i&gt;" in hover and "<i>sentence" not in hover
    assert [t for t in spec["data"] if t["name"] == "your sentences"]  # the typed sentence is placed


def test_paths_outside_the_data_directory_are_refused(tiny_model_dirs, data_root):
    for path in ("../", "/etc", "big/../../", "missing"):
        at = open_page("pages/3_Embeddings.py",
                       **_state(tiny_model_dirs["bert"], "embeddings.corpus", path, **{"embeddings.method": "PCA"}))
        shown = " ".join(t.value for t in at.text)
        assert at.error and ("outside" in shown or "no folder" in shown), path
        assert not at.get("plotly_chart")


def test_the_probe_page_opens_100k_rows(tiny_model_dirs):
    at = open_page("pages/4_Any_token.py", **_state(tiny_model_dirs["bert"], "any_token.corpus", "big"))
    assert not at.error
    assert at.selectbox(key="any_token.label").options == ["topic"]
    assert at.multiselect(key="any_token.poolings.3").options == ["cls", "mean"]
    assert at.button(key="any_token.run_saved")


def test_the_inversion_page_searches_100k_rows(tiny_model_dirs, data_root, tiny_encoder):
    from clsviz import pool, trace
    from clsviz.vectors_io import load_vectors

    sentence = "sentence 7 about food"
    at = open_page("pages/6_Inversion.py", sentences=sentence,
                   **_state(tiny_model_dirs["bert"], "inversion.corpus", "big", **{"inversion.layer": 1}))
    assert not at.error
    frames = [df.value for df in at.dataframe if "cosine" in df.value.columns]
    assert len(frames) == 2  # [CLS] and mean side by side
    # Independently: cosine of the typed sentence's [CLS] with every saved [CLS] vector, in numpy.
    shards = load_vectors(data_root / "big")
    q = pool(trace(tiny_encoder, sentence), "cls", 1).astype(np.float64)
    X = shards.get("cls", 1).astype(np.float64)
    cos = X @ q / (np.linalg.norm(X, axis=1) * np.linalg.norm(q))
    best = np.argsort(-cos)[:5]
    assert list(frames[0]["text"]) == [shards.texts[i] for i in best]
    assert np.allclose(frames[0]["cosine"], cos[best], atol=1e-5)


def test_damaged_or_foreign_folders_keep_the_app_serving(tiny_model_dirs, data_root, tiny_encoder):
    from clsviz.vectors_io import load_vectors

    small = load_vectors(data_root / "big").sample(40)
    bad = data_root / "flipped"
    if not bad.exists():
        save_shards([small], bad, rows=40)
        data = bytearray((bad / "shard-00000.parquet").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (bad / "shard-00000.parquet").write_bytes(bytes(data))
    at = open_page("pages/3_Embeddings.py",
                   **_state(tiny_model_dirs["bert"], "embeddings.corpus", "flipped", **{"embeddings.method": "PCA"}))
    assert at.error and any("checksum" in t.value for t in at.text) and not at.get("plotly_chart")
    foreign = data_root / "foreign"
    if not foreign.exists():
        from dataclasses import replace

        save_shards([replace(small, model_name="someone/other-model")], foreign, rows=40)
    at = open_page("pages/6_Inversion.py", sentences="A typed sentence.",
                   **_state(tiny_model_dirs["bert"], "inversion.corpus", "foreign"))
    assert any("someone/other-model" in w.value for w in at.warning)
    assert not [df for df in at.dataframe if "cosine" in df.value.columns]


def test_parquet_and_jsonl_uploads_in_the_picker():
    import io as _io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.test_ui_corpus import _app

    sink = _io.BytesIO()
    pq.write_table(pa.table({"text": ["One sentence.", "Another <b>one</b>.", "A third."],
                             "label": ["a", "b", "a"]}), sink)
    for name, data in (("c.parquet", sink.getvalue()),
                       ("c.jsonl", b'{"text": "One sentence.", "label": "a"}\n{"text": "Another <b>one</b>.", '
                                   b'"label": "b"}\n{"text": "A third.", "label": "a"}\n')):
        at = _app((name, data))
        result = at.session_state["result"]
        assert result["texts"] == ("One sentence.", "Another <b>one</b>.", "A third.")
        assert result["labels"] == {"label": ("a", "b", "a")}


def _folder_upload_script():
    from pathlib import Path
    from unittest import mock

    import streamlit as st

    from ui import vectors as V

    class Upload:
        def __init__(self, path):
            self.name, self._data = path.name, path.read_bytes()

        def getvalue(self):
            return self._data

    files = [Upload(p) for p in sorted(Path(st.session_state["folder"]).iterdir())]
    with mock.patch.object(st, "file_uploader", lambda *a, **k: files):
        shown = V.saved_vectors_picker("test.vectors")
    st.session_state["rows"] = None if shown is None else len(shown.texts)


def test_an_uploaded_shard_folder_is_written_whole_and_opened(tmp_path, tiny_encoder, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the app writes uploads
    chunk = next(_chunks(tiny_encoder.name))
    small = PooledVectors(vectors=chunk.vectors[:40], poolings=chunk.poolings, texts=chunk.texts[:40],
                          model_name=chunk.model_name, truncated=chunk.truncated[:40], labels={})
    save_shards([small], tmp_path / "source", rows=40)
    at = AppTest.from_function(_folder_upload_script, default_timeout=60)
    at.session_state["folder"] = str(tmp_path / "source")
    at.session_state["test.vectors.kind"] = FOLDER_UPLOAD
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["rows"] == 40
    written = [p for p in (tmp_path / "tmp" / "clsviz-uploads").iterdir()]
    assert len(written) == 1 and not written[0].name.startswith(".")  # no staging copy left beside it
    assert not (written[0] / INCOMPLETE_MARKER).exists()
