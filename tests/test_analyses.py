"""The analysis layer: declarations, parameters, digests, results, and one declaration reaching
the command line, the HTML report and the app's runner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pytest

from clsviz import Corpus, report, trace
from clsviz.analyses import ANALYSES, Drawn, NotApplicable, ParamError, Result, analysis, digest, get, run
from clsviz.cli import main
from clsviz.figures import figure_spec
from clsviz.tables import Table, as_table


@pytest.fixture
def declared():
    """Declare analyses for one test and remove them afterwards."""
    made = []

    def declare(name, **options):
        def wrap(function):
            declared_now = analysis(name, **options)(function)
            made.append(name)  # only what this test declared is removed afterwards
            return declared_now

        return wrap

    yield declare
    for name in made:
        ANALYSES.pop(name, None)


@dataclass(frozen=True, eq=False)
class _Lengths(Result):
    lengths: pd.DataFrame

    def table(self) -> pd.DataFrame:
        return self.lengths

    def summary(self) -> list[str]:
        return [f"{len(self.lengths)} sentence(s)"]


def test_parameters_are_checked_and_errors_list_the_choices(declared):
    @declared("test.params", title="t", inputs=("trace",))
    def f(trace, *, mode: Literal["a", "b"] = "a", n: int = 3, x: float = 0.5, flag: bool = False,
          name: str | None = None):  # fmt: skip
        return _Lengths(pd.DataFrame())

    a = get("test.params")
    assert [p.name for p in a.params] == ["mode", "n", "x", "flag", "name"]
    assert a.param("mode").choices == ("a", "b")
    assert a.check() == {"mode": "a", "n": 3, "x": 0.5, "flag": False, "name": None}
    # Text (from a command line) becomes the parameter's kind.
    assert a.check(mode="b", n="7", x="2", flag="yes", name="none") == {
        "mode": "b",
        "n": 7,
        "x": 2.0,
        "flag": True,
        "name": "none",
    }  # text stays text
    assert a.check(x=2)["x"] == 2.0 and isinstance(a.check(x=2)["x"], float)
    with pytest.raises(ParamError, match=r"mode of 'test.params' must be one of 'a', 'b'; got 'c'"):
        a.check(mode="c")
    with pytest.raises(ParamError, match="whole number"):
        a.check(n="seven")
    with pytest.raises(ParamError, match="whole number"):
        a.check(n=True)  # a bool is not a count
    with pytest.raises(ParamError, match="true or false"):
        a.check(flag="maybe")
    with pytest.raises(ParamError, match="has no parameter 'nope'; it has mode, n, x, flag, name"):
        a.check(nope=1)


def test_bad_declarations_are_refused(declared):
    with pytest.raises(ValueError, match="unknown input role"):
        declared("test.role", title="t", inputs=("sentence",))(lambda sentence: None)
    with pytest.raises(TypeError, match="must be its inputs"):
        declared("test.order", title="t", inputs=("encoder", "trace"))(lambda trace, encoder: None)
    with pytest.raises(TypeError, match="needs a default"):

        @declared("test.default", title="t", inputs=("trace",))
        def no_default(trace, *, k: int):
            return None

    with pytest.raises(TypeError, match="annotate it"):

        @declared("test.annotation", title="t", inputs=("trace",))
        def bad_annotation(trace, *, k: list = ()):  # noqa: B006 - the annotation is what is tested
            return None

    with pytest.raises(KeyError, match="no figure"):
        declared("test.figure", title="t", inputs=("trace",), figures=("attention.nope",))(lambda trace: None)
    with pytest.raises(ParamError, match="must be one of"):

        @declared("test.bad_default", title="t", inputs=("trace",))
        def bad_default(trace, *, mode: Literal["a", "b"] = "c"):
            return None

    with pytest.raises(ValueError, match="declared twice"):
        declared("attention", title="t", inputs=("trace",))(lambda trace: None)


def test_calling_an_analysis_checks_its_inputs_and_its_result(declared, tiny_encoder):
    @declared("test.not_a_result", title="t", inputs=("trace",))
    def wrong(trace):
        return pd.DataFrame()

    t = trace(tiny_encoder, "the cat")
    with pytest.raises(TypeError, match="not a clsviz.analyses.Result"):
        run("test.not_a_result", t)
    with pytest.raises(ValueError, match="needs its trace"):
        run("test.not_a_result", None)
    with pytest.raises(KeyError, match="declared: .*tokens"):
        get("nope")


def test_long_analyses_get_progress_and_cancel(declared, tiny_encoder):
    seen = {}

    @declared("test.long", title="t", inputs=("texts",), long=True)
    def long_one(texts, *, progress=None, cancel=None):
        seen["callbacks"] = (progress, cancel)
        progress(1, 1, "done")
        return _Lengths(pd.DataFrame({"n": [len(x) for x in texts]}))

    calls = []
    result = run("test.long", ["ab", "c"], progress=lambda *a: calls.append(a), cancel="token")
    assert result.table()["n"].tolist() == [2, 1]
    assert seen["callbacks"][1] == "token" and calls == [(1, 1, "done")]
    assert get("test.long").long and get("test.long").callbacks == ("progress", "cancel")


def test_digests_are_equal_for_equal_content(tiny_encoder):
    a, b = trace(tiny_encoder, "the cat"), trace(tiny_encoder, "the cat")
    assert a is not b and digest(a) == digest(b) != digest(trace(tiny_encoder, "the dog"))
    assert digest(tiny_encoder) == ("encoder", tiny_encoder.name)
    assert digest(["x", "y"]) == digest(("x", "y")) != digest(["xy"]) != digest(["x", "y", ""])
    c1 = Corpus(texts=("a b", "c d"), labels={"y": ("p", "q")})
    assert digest(c1) == digest(Corpus(texts=("a b", "c d"), labels={"y": ("p", "q")}))
    assert digest(c1) != digest(Corpus(texts=("a b", "c d"), labels={"y": ("q", "p")}))
    table = pd.DataFrame({"sentence1": ["a"], "sentence2": ["b"], "score": [1.0]})
    assert digest(table) == digest(table.copy()) != digest(table.assign(score=[2.0]))
    x = np.arange(6, dtype=np.float32)
    assert digest(x) == digest(x.copy()) != digest(x.reshape(2, 3))
    with pytest.raises(TypeError, match="no digest"):
        digest(object())
    # A cache key ignores how parameters were spelled once checked.
    key = get("attention").key((a,), {})
    assert key == get("attention").key((b,), {"method": "attention", "include_self": "true"})
    assert key != get("attention").key((a,), {"include_self": False})


def test_a_table_is_a_data_frame_that_can_be_called():
    t = as_table(pd.DataFrame({"layer": [0, 1], "score": [0.5, 1.0]}))
    assert isinstance(t, Table) and isinstance(t, pd.DataFrame)
    assert t() is t and t["layer"].tolist() == [0, 1]
    assert isinstance(t[t["layer"] > 0], Table)  # derived frames keep the type
    assert as_table(t) is t


def test_every_declared_analysis_is_well_formed():
    assert len(ANALYSES) >= 20
    for a in ANALYSES.values():
        assert a.title and a.description, a.name
        for key in a.figures:
            figure_spec(key)
        a.check()  # every default is valid
        if a.report:
            assert set(a.inputs) <= {"trace", "traces", "texts", "encoder", "baseline"}, a.name


def test_attention_result_reads_like_the_trace(tiny_encoder):
    t = trace(tiny_encoder, "the cat sat")
    result = run("attention", t)
    np.testing.assert_allclose(result.matrix(2, 1), t.attentions[1, 1])
    np.testing.assert_allclose(result.matrix(), t.attentions[-1].mean(axis=0), rtol=1e-6)
    assert set(result.figures(block=1, head=0)) == set(result.figure_keys())
    assert result.figure_table("attention.matrix", block=1, head=0)["weight"].to_numpy() == pytest.approx(
        t.attentions[0, 0].ravel()
    )
    with pytest.raises(ValueError, match="head 9"):
        result.figure("attention.matrix", head=9)
    assert "attention.breakdown_value_norm" not in result.figure_keys()
    value_norm = run("attention", t, tiny_encoder, method="value_norm")
    assert "attention.breakdown_value_norm" in value_norm.figure_keys()
    with pytest.raises(NotApplicable, match="needs the model's weights"):
        run("attention", t, method="value_norm")


def test_one_declaration_reaches_the_command_line_and_the_report(
    declared, tiny_encoder, tmp_path, capsys, monkeypatch
):
    @declared("test.tokens_count", title="How many tokens", inputs=("trace",), figures=("overview.tokens",),
              report=True)  # fmt: skip
    def tokens_count(trace, *, unit: Literal["tokens", "pieces"] = "tokens") -> Drawn:
        """Counts the tokens of a sentence."""
        return Drawn({"overview.tokens": (trace,)}, pd.DataFrame({"unit": [unit], "count": [trace.seq_len]}),
                     sentences=(f"{trace.seq_len} {unit}",))  # fmt: skip

    assert main(["analyses"]) == 0
    assert "test.tokens_count: How many tokens" in capsys.readouterr().out
    out = tmp_path / "count.csv"
    code = main(["run", "test.tokens_count", "--model", str(tiny_encoder.info.source), "--text", "the cat",
                 "--unit", "pieces", "--out", str(out), "-q"])  # fmt: skip
    assert code == 0
    t = trace(tiny_encoder, "the cat")
    assert capsys.readouterr().out.strip() == f"{t.seq_len} pieces"
    assert pd.read_csv(out).to_dict("records") == [{"unit": "pieces", "count": t.seq_len}]
    assert main(["run", "test.tokens_count", "--text", "x", "--unit", "bytes"]) == 2
    assert "must be one of 'tokens', 'pieces'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyses", "--unit", "x"])
    monkeypatch.setattr(report, "report_analyses", lambda: [get("test.tokens_count")])
    (section,) = report.report_sections(t)
    assert section.key == "overview.tokens" and section.figure is not None


def test_the_runner_caches_one_result_per_input_and_parameters(tiny_encoder):
    from ui import runner

    t = trace(tiny_encoder, "the cat")
    first = runner.run("attention", t)
    assert runner.run("attention", trace(tiny_encoder, "the cat")) is first  # same content: shared
    assert runner.run("attention", t, include_self=False) is not first
    assert runner.result_key(first)[0] == "attention"
    assert runner.figure(first, "attention.to_cls") is runner.figure(first, "attention.to_cls")
    assert runner.stored("attention", t) is first
    assert runner.stored("attention", trace(tiny_encoder, "another text")) is None


def _first_look_page():
    import streamlit as st

    from ui import runner

    seconds = st.session_state["test.seconds"]
    found = runner.background("test.first_look", [f"{seconds}"], button="Go", seconds=seconds)
    if found is not None:
        st.write(f"result: {found.table()['n'].tolist()}")


@pytest.mark.parametrize(("seconds", "drawn_at_once"), [(0.4, True), (4.0, False)])
def test_a_short_job_is_drawn_by_the_run_its_button_started(declared, seconds, drawn_at_once):
    # After its button, the page waits up to runner.FIRST_LOOK_S for the job: one that ends by then is drawn by
    # that run; a longer one shows its progress panel (with Cancel) and is drawn when it has ended.
    import time

    from streamlit.testing.v1 import AppTest

    from ui import runner

    @declared("test.first_look", title="t", inputs=("texts",), long=True)
    def slow(texts, *, seconds: float = 0.0, progress=None, cancel=None):
        time.sleep(seconds)
        return _Lengths(pd.DataFrame({"n": [len(x) for x in texts]}))

    assert 0.4 < runner.FIRST_LOOK_S < 4.0  # the two cases fall either side of the wait
    at = AppTest.from_function(_first_look_page, default_timeout=60)
    at.session_state["test.seconds"] = seconds
    at.run()
    at.button(key="analysis.test.first_look.start").click().run()
    assert not at.exception, at.exception
    shown = [m.value for m in at.markdown]
    assert ("result: [3]" in shown) is drawn_at_once, shown
    assert any(b.label == "Cancel" for b in at.button) is not drawn_at_once
    if not drawn_at_once:
        assert at.session_state["clsviz.jobs"]["analysis.test.first_look"].wait(30)
        at.run()
        assert "result: [3]" in [m.value for m in at.markdown]
