"""The example notebook runs top to bottom on the bundled model (so it cannot rot)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "clsviz_tour.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel is ipykernel in this interpreter (it inherits HF_HUB_OFFLINE=1 from conftest).
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path_factory.mktemp("notebook"))}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    return nb


def test_notebook_is_stored_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"


def test_notebook_runs_top_to_bottom(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    for cell in code:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source


def test_figure_cells_display_plotly_figures(executed):
    figure_cells = [c for c in executed.cells if "figure" in c.metadata.get("tags", [])]
    assert len(figure_cells) >= 8
    for cell in figure_cells:
        shown = [o for o in cell.outputs if PLOTLY in o.get("data", {})]
        assert len(shown) == 1, cell.source
        assert shown[0]["data"][PLOTLY]["data"], f"empty figure from: {cell.source}"


def test_notebook_shows_the_bundled_models_tokens(executed, encoder):
    text = "Why is the [CLS] token always first?"
    tok = encoder.tokenizer
    # A typed "[CLS]" is text, not the special token: the tokenizer must split it like any word.
    expected = [tok.cls_token, *tok.tokenize(text, split_special_tokens=True), tok.sep_token]
    (cell,) = [c for c in executed.cells if c.source.startswith("figures.tokens_figure(t)")]
    (shown,) = [o for o in cell.outputs if PLOTLY in o.get("data", {})]
    assert list(shown["data"][PLOTLY]["data"][0]["text"]) == expected
    printed = "".join(
        o.get("text", "")
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )
    assert str(tuple(expected)) in printed
