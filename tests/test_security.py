"""Security settings and rules that hold for the whole code base.

* clsviz never imports Streamlit (checked in a clean interpreter);
* no Streamlit call renders raw HTML, and nothing enables ``trust_remote_code``
  (checked on the syntax tree of every Python file, so comments and strings do not count);
* .streamlit/config.toml: XSRF protection on, usage statistics off, an upload limit that
  fits the corpus limits, no error details on the page;
* the model allow-list (``CLSVIZ_ALLOWED_MODELS``) is enforced by load_encoder and by the
  sidebar's choices.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clsviz import DEFAULT_MODEL, ModelLoadError, load_encoder
from clsviz.encoder import ALLOWED_MODELS_ENV, allowed_models
from clsviz.readers import DEFAULT_MAX_BYTES

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: Streamlit's own TOML dependency reads it too
    import toml as tomllib

ROOT = Path(__file__).resolve().parent.parent
APP_FILES = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").glob("*.py")])
ALL_CODE = sorted(
    p
    for p in [
        *ROOT.glob("*.py"),
        *ROOT.glob("clsviz/**/*.py"),
        *ROOT.glob("ui/**/*.py"),
        *ROOT.glob("pages/*.py"),
        *ROOT.glob("benchmarks/**/*.py"),
        *ROOT.glob("scripts/**/*.py"),
    ]
    if ".venv" not in p.parts
)
CONFIG = ROOT / ".streamlit" / "config.toml"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _call_name(node: ast.Call) -> str:
    """Dotted name of what is called: ``st.components.v1.html`` -> "st.components.v1.html"."""
    parts = []
    func = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    else:  # a method of a computed value, e.g. ``model.to("cpu").eval()``: never a builtin
        parts.append("<expr>")
    return ".".join(reversed(parts))


def test_clsviz_never_imports_streamlit():
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import clsviz\n"
        "names = [m.name for m in pkgutil.walk_packages(clsviz.__path__, 'clsviz.')]\n"
        "skipped = [n for n in names if n.endswith('__main__')]\n"
        "for n in names:\n"
        "    if n not in skipped:\n"
        "        importlib.import_module(n)\n"
        "print(json.dumps({'modules': names, 'streamlit': sorted(m for m in sys.modules if m.split('.')[0] == 'streamlit')}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "clsviz.encoder" in result["modules"] and "clsviz.figures" in result["modules"]
    assert result["streamlit"] == [], f"clsviz pulled in streamlit: {result['streamlit'][:5]}"


def test_no_streamlit_file_imports_happen_in_clsviz_source():
    offenders = []
    for path in ROOT.glob("clsviz/**/*.py"):
        for node in ast.walk(_tree(path)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{_rel(path)}:{node.lineno}" for n in names if n.split(".")[0] in ("streamlit", "ui")
            ]
    assert not offenders


def test_app_code_never_renders_raw_html():
    """No unsafe_allow_html=True, no st.html, no components.html / iframe anywhere in the app."""
    assert (ROOT / "app.py").exists() and len(APP_FILES) >= 3
    offenders = []
    for path in APP_FILES:
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            for kw in node.keywords:
                if kw.arg == "unsafe_allow_html" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    offenders.append(f"{_rel(path)}:{node.lineno} {name}(unsafe_allow_html=...)")
            if name.split(".")[-1] in ("html", "iframe") and (
                "st" in name.split(".") or "components" in name
            ):
                offenders.append(f"{_rel(path)}:{node.lineno} {name}()")
    assert not offenders, offenders


def test_nothing_enables_remote_code_or_unchecked_eval():
    offenders = []
    for path in ALL_CODE:
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "trust_remote_code" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    offenders.append(f"{_rel(path)}:{node.lineno} trust_remote_code={ast.unparse(kw.value)}")
                if (
                    kw.arg == "weights_only"
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is False
                ):
                    offenders.append(f"{_rel(path)}:{node.lineno} weights_only=False")
            name = _call_name(node)
            if name in ("eval", "exec", "pickle.load", "pickle.loads", "os.system") or name.endswith(
                "yaml.load"
            ):
                offenders.append(f"{_rel(path)}:{node.lineno} {name}()")
    assert not offenders, offenders


def test_every_from_pretrained_call_says_trust_remote_code_false():
    """Defaults change between transformers versions: each loading call states it explicitly."""
    missing = []
    for path in ALL_CODE:
        if path.parts[len(ROOT.parts)] not in ("clsviz", "ui", "pages", "app.py"):
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call) and _call_name(node).endswith("from_pretrained"):
                if not any(kw.arg == "trust_remote_code" for kw in node.keywords):
                    missing.append(f"{_rel(path)}:{node.lineno} {_call_name(node)}")
    assert not missing, missing


# ------------------------------------------------------------------------------------------
# .streamlit/config.toml
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> dict:
    return tomllib.loads(CONFIG.read_text(encoding="utf-8"))


def test_config_protects_against_cross_site_requests(config):
    assert config["server"]["enableXsrfProtection"] is True
    # With enableCORS = false Streamlit answers any origin and accepts its WebSockets.
    assert config["server"].get("enableCORS", True) is True


def test_config_sends_no_usage_statistics(config):
    assert config["browser"]["gatherUsageStats"] is False


def test_config_upload_limit_fits_the_corpus_limit(config):
    limit_mb = config["server"]["maxUploadSize"]
    assert isinstance(limit_mb, int)
    # Every file the corpus loader accepts can be uploaded, and the server refuses anything
    # far larger before it is held in memory.
    assert DEFAULT_MAX_BYTES <= limit_mb * 1024 * 1024 <= 4 * DEFAULT_MAX_BYTES
    # WebSocket messages (a pasted sentence box, a drawn figure) are capped below the default 200 MB.
    assert 10 <= config["server"]["maxMessageSize"] < 200


def test_config_hides_error_details_and_uses_own_navigation(config):
    assert config["client"]["showErrorDetails"] in ("none", False)
    assert config["client"]["showSidebarNavigation"] is False
    assert config["runner"]["magicEnabled"] is False
    assert config["server"].get("runOnSave", False) is False


def test_config_is_the_one_streamlit_reads(config):
    """Streamlit's own parser agrees with the file (a misspelt option would be ignored silently)."""
    from streamlit import config as st_config

    known = st_config.get_config_options()
    unknown = [
        f"{section}.{key}"
        for section, options in config.items()
        for key in options
        if f"{section}.{key}" not in known
    ]
    assert not unknown, f"options Streamlit does not know: {unknown}"


# ------------------------------------------------------------------------------------------
# model allow-list
# ------------------------------------------------------------------------------------------


def test_allow_list_is_off_by_default(monkeypatch):
    monkeypatch.delenv(ALLOWED_MODELS_ENV, raising=False)
    assert allowed_models() is None


def test_allow_list_always_keeps_the_bundled_default(monkeypatch):
    monkeypatch.setenv(ALLOWED_MODELS_ENV, " bert-base-uncased , ,roberta-base,")
    assert allowed_models() == (DEFAULT_MODEL, "bert-base-uncased", "roberta-base")


def test_allow_list_refuses_other_ids_and_folders(monkeypatch, tiny_model_dirs):
    monkeypatch.setenv(ALLOWED_MODELS_ENV, "bert-base-uncased")
    for name in ("roberta-base", str(tiny_model_dirs["bert"]), "owner/some-model"):
        with pytest.raises(ModelLoadError, match="only allows these models") as info:
            load_encoder(name)
        assert ALLOWED_MODELS_ENV in str(info.value) and "bert-base-uncased" in str(info.value)
    # The default model is always allowed.
    assert load_encoder(None).info.name == DEFAULT_MODEL


def test_allow_list_admits_a_listed_folder(monkeypatch, tiny_model_dirs):
    folder = str(tiny_model_dirs["bert"])
    monkeypatch.setenv(ALLOWED_MODELS_ENV, f"bert-base-uncased,{folder}")
    assert load_encoder(folder).info.num_layers == 2


def test_allow_list_limits_the_sidebar_choices(monkeypatch):
    monkeypatch.setenv(ALLOWED_MODELS_ENV, "bert-base-uncased,roberta-base")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    # A session that somehow holds a model outside the list is put back on the default.
    at.session_state["clsviz.model"] = "Other (hub id or local folder)…"
    at.session_state["clsviz.custom_model"] = "owner/not-allowed"
    at.run()
    assert not at.exception
    box = at.sidebar.selectbox(key="sidebar.model")
    assert list(box.options) == [DEFAULT_MODEL, "bert-base-uncased", "roberta-base"]
    assert box.value == DEFAULT_MODEL
    assert not at.sidebar.text_input, "no free-text model field when a list is set"
    assert not at.error and len(at.get("plotly_chart")) == 3


def test_without_allow_list_the_sidebar_offers_any_model(monkeypatch):
    monkeypatch.delenv(ALLOWED_MODELS_ENV, raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    assert not at.exception
    options = list(at.sidebar.selectbox(key="sidebar.model").options)
    assert options[0] == DEFAULT_MODEL and any(o.startswith("Other") for o in options)
