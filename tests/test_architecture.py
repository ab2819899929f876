"""The house rules of issue 25 that import-linter does not check: imports live at the top of a module.

A project import (``clsviz``, ``ui`` or a relative one) made inside a function was, almost always,
a way round an import circle. The circles are gone (``.importlinter`` forbids new ones), so such
imports are counted here; outside the command line (where deferring keeps ``clsviz --help`` fast)
at most a handful remain, each with its reason. Third-party imports inside functions (sklearn,
umap, ray, ...) are not counted: they defer heavy optional libraries.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from clsviz.layers import block_input, block_of_row, block_row, later_blocks

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("clsviz", "ui")
CEILING = 7
"""In-function project imports allowed in clsviz/ and ui/ outside clsviz/cli/ (issue 25)."""


def in_function_project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, statement) of every import of a project module made inside a function of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if in_function and isinstance(child, ast.ImportFrom):
                if child.level > 0 or (child.module or "").split(".")[0] in PROJECT:
                    found.append((child.lineno, ast.unparse(child)))
            elif in_function and isinstance(child, ast.Import):
                if any(alias.name.split(".")[0] in PROJECT for alias in child.names):
                    found.append((child.lineno, ast.unparse(child)))
            visit(child, inside)

    visit(tree, False)
    return found


def _offenders(include_cli: bool) -> list[str]:
    out = []
    for package in PROJECT:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not include_cli and rel.startswith("clsviz/cli/"):
                continue
            out += [f"{rel}:{line}: {text}" for line, text in in_function_project_imports(path)]
    return out


def test_the_counter_finds_what_it_should(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import clsviz\n"
        "from . import top\n"
        "def f():\n"
        "    import numpy\n"
        "    from sklearn.linear_model import Ridge\n"
        "    from .pooling import pool\n"
        "    import clsviz.encoder as enc\n"
        "    def g():\n"
        "        from ui.state import x\n"
        "class C:\n"
        "    def m(self):\n"
        "        from ..layers import check_layer\n"
    )
    found = in_function_project_imports(sample)
    assert [line for line, _ in found] == [6, 7, 9, 12]
    assert found[0][1] == "from .pooling import pool"


def test_in_function_project_imports_stay_under_the_ceiling():
    offenders = _offenders(include_cli=False)
    assert len(offenders) <= CEILING, (
        f"{len(offenders)} project imports inside functions outside clsviz/cli/ (at most {CEILING}); move them to "
        "the top of their module:\n" + "\n".join(offenders)
    )


def test_layer_arithmetic_is_named_in_layers():
    """Blocks are 1..L and per-block arrays start at row 0; that +-1 is written once, in
    clsviz/layers.py, and read by name everywhere else."""
    assert [block_row(b) for b in (1, 2, 6)] == [0, 1, 5]
    assert [block_of_row(r) for r in (0, 5)] == [1, 6]
    assert block_input(1) == 0 and block_input(6) == 5  # block l reads hidden state l - 1
    assert list(later_blocks(0, 3)) == [1, 2, 3] and list(later_blocks(3, 3)) == []
    attentions = np.arange(6)  # one row per block of a 6-block model
    assert all(attentions[block_row(b)] == b - 1 for b in range(1, 7))


def test_no_module_imports_another_modules_private_names():
    """A name that starts with an underscore belongs to its module: another module that needs it
    gets a public name instead (issue 25)."""
    offenders = []
    for path in sorted([*(ROOT / "clsviz").rglob("*.py"), *(ROOT / "ui").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 0 and (node.module or "").split(".")[0] not in PROJECT:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]  # fmt: skip
    assert offenders == []
