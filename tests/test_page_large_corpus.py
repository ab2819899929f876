"""A 100,000-row shard folder (vectors generated here, not embedded) opens on the Embeddings,
probe and inversion pages; paths outside the data directory and damaged folders are refused."""

from __future__ import annotations

import base64
import html
import json

import numpy as np
import pytest

from clsviz.extraction import save_shards
from clsviz.vectors import PooledVectors
from tests.conftest import open_page
from ui.state import OTHER
from ui.vectors import DATA_DIR_ENV, FOLDER_PATH

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
