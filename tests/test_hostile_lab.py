"""Hostile input to the newest surfaces: the pretraining lab (``clsviz.lab.pretrain``, ``clsviz
pretrain``, the Lab page) and the trained readers (``tuned_lens``, ``train_inverter``, the inversion
ladder; ``clsviz lens`` / ``clsviz invert``; the Inversion page).

Every case is one row of ``ROWS``: the input, the surface it reaches (``api``, ``cli`` or ``page``),
the expected outcome (``refused``: a message a person can act on, nothing trained; ``served``: the
page keeps serving with the value corrected or the bad entry left out) and the message pattern.
Refusals come before any work: the ``no_work`` fixture makes training a tokenizer, building a lab
model, embedding texts and building an inverter fail the test, so a row that refuses late fails.
Together with tests/test_hostile_input.py and tests/test_hostile_controls.py this is the table of
hostile inputs.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from clsviz import ModelLoadError, load_encoder
from clsviz.analyses import get
from clsviz.cli import main as cli_main
from clsviz.corpus import demo_corpus
from clsviz.experiments.inverter import train_inverter
from clsviz.experiments.ladder import inversion_ladder
from clsviz.experiments.lens import tuned_lens
from clsviz.lab import excerpt_texts, open_run, pretrain
from tests.conftest import open_page

TINY_LAB = dict(layers=2, hidden=32, heads=2, intermediate=64, max_tokens=40, vocab_size=600, batch_size=8)
TEXTS = [f"Sentence number {i} talks about topic {i % 3} and more." for i in range(30)]
SPECIALS = "[CLS] [SEP] [MASK]"
TEN_MB_LINE = "lorem ipsum dolor sit amet " * (10_000_000 // 27)  # one line, no sentence ends


@dataclass(frozen=True)
class Row:
    """One hostile input.

    surface: "api" (payload: a function of the ``Setting`` that makes the call), "cli" (payload: a
        function of the ``Setting`` returning the argument list), "page" (payload: the name of a
        scenario in ``PAGE_STEPS``).
    outcome: "refused" (the message, nothing trained, for the page: nothing queued) | "served" (the
        page keeps serving: no exception, something drawn or said, nothing started).
    message: a regex the message must match ("" = none needed).
    """

    id: str
    surface: str
    payload: object
    outcome: str
    message: str = ""
    errors: tuple = field(default=(ValueError,))


@dataclass
class Setting:
    tmp: Path
    encoder: object
    model_dir: Path
    inverter: object
    lab: dict
    no_pooler: object


def _write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _corpus(tmp: Path, n: int) -> str:
    return _write(tmp, f"corpus{n}.csv", "text\n" + "\n".join(TEXTS[:n]) + "\n")


def _lab(s: Setting, **kw):
    options = dict(config=TINY_LAB, steps=2, checkpoints=0, out=s.tmp / "new-run")
    options.update(kw)
    return pretrain(options.pop("texts", excerpt_texts()), **options)


def _pretrain_args(s: Setting, *extra: str) -> list[str]:
    return ["pretrain", "--size", "tiny", "--steps", "2", "--checkpoints", "0", "--quiet",
            "--out", str(s.tmp / "cli-out"), *extra]  # fmt: skip


def _full_folder(s: Setting) -> str:
    folder = s.tmp / "full"
    folder.mkdir(exist_ok=True)
    (folder / "keep.txt").write_text("someone's work")
    return str(folder)


ROWS = [
    # --- the lab, from the library ---------------------------------------------------------------------
    Row("lab-layers-zero", "api", lambda s: _lab(s, config={**TINY_LAB, "layers": 0}), "refused",
        r"'layers' must be a whole number from 1 to 24, got 0"),
    Row("lab-layers-10000", "api", lambda s: _lab(s, config={**TINY_LAB, "layers": 10_000}), "refused",
        r"'layers' must be a whole number from 1 to 24, got 10000"),
    Row("lab-layers-text", "api", lambda s: _lab(s, config={**TINY_LAB, "layers": "4"}), "refused",
        r"'layers' must be a whole number from 1 to 24, got '4'"),
    Row("lab-hidden-not-divisible-by-heads", "api", lambda s: _lab(s, config={**TINY_LAB, "hidden": 33}), "refused",
        r"'hidden' \(33\) must be a multiple of 'heads' \(2\).*Try hidden=32"),
    Row("lab-max-tokens-2", "api", lambda s: _lab(s, config={**TINY_LAB, "max_tokens": 2}), "refused",
        r"'max_tokens' must be a whole number from 8 to 512, got 2"),
    Row("lab-max-tokens-100000", "api", lambda s: _lab(s, config={**TINY_LAB, "max_tokens": 100_000}), "refused",
        r"'max_tokens' must be a whole number from 8 to 512, got 100000"),
    Row("lab-config-unknown-key", "api", lambda s: _lab(s, config={**TINY_LAB, "depth": 3}), "refused",
        r"Unknown config key\(s\) depth\. Valid: layers, hidden"),
    Row("lab-config-not-a-dict", "api", lambda s: _lab(s, config=[4, 128]), "refused", r"config must be a dict"),
    Row("lab-steps-negative", "api", lambda s: _lab(s, steps=-5), "refused",
        r"steps must be a whole number from 1 to 10000000, got -5"),
    Row("lab-steps-huge", "api", lambda s: _lab(s, steps=10**12), "refused",
        r"steps must be a whole number from 1 to 10000000, got 1000000000000"),
    Row("lab-checkpoints-negative", "api", lambda s: _lab(s, checkpoints=-1), "refused",
        r"checkpoints must be a whole number from 0 to 100"),
    Row("lab-summary-middle", "api", lambda s: _lab(s, summary="middle"), "refused",
        r"Unknown summary 'middle'\. Valid: 'first'.*'last'.*'none'"),
    Row("lab-objective-unknown", "api", lambda s: _lab(s, sentence_objective="xyz"), "refused",
        r"Unknown sentence objective 'xyz'\. Valid: 'nsp'.*'sop'.*None"),
    Row("lab-texts-empty", "api", lambda s: _lab(s, texts=[]), "refused", r"No text to pretrain on"),
    Row("lab-texts-blank", "api", lambda s: _lab(s, texts=["", "  \n\t"]), "refused", r"No text to pretrain on"),
    Row("lab-texts-one-string", "api", lambda s: _lab(s, texts="Some running text. More of it."), "refused",
        r"not one string: wrap it in a list"),
    Row("lab-texts-one-word", "api", lambda s: _lab(s, texts=["word"]), "refused",
        r"needs running text: at least one document with two or more consecutive sentences"),
    Row("lab-texts-10mb-one-line", "api", lambda s: _lab(s, texts=[TEN_MB_LINE]), "refused",
        r"needs running text: at least one document with two or more consecutive sentences"),
    Row("lab-texts-special-tokens-only", "api", lambda s: _lab(s, texts=[SPECIALS]), "refused",
        r"only special-token strings such as \[CLS\], \[SEP\] and \[MASK\]"),
    Row("lab-texts-special-token-sentences", "api", lambda s: _lab(s, texts=[f"{SPECIALS}."] * 40), "refused",
        r"only special-token strings such as \[CLS\], \[SEP\] and \[MASK\]"),
    Row("lab-texts-not-strings", "api", lambda s: _lab(s, texts=["A sentence.", 42]), "refused",
        r"texts\[1\] is a int; every text must be a string"),
    Row("lab-out-non-empty-folder", "api", lambda s: _lab(s, out=_full_folder(s)), "refused",
        r"already exists and is not an empty folder; choose another \(nothing is overwritten\)",
        (FileExistsError,)),
    Row("lab-out-is-a-file", "api", lambda s: _lab(s, out=_write(s.tmp, "a-file", "x")), "refused",
        r"already exists and is not an empty folder", (FileExistsError,)),
    Row("lab-out-parent-missing", "api", lambda s: _lab(s, out=s.tmp / "no" / "such" / "run"), "refused",
        r"The folder '.*such' does not exist; create it", (FileNotFoundError,)),
    Row("lab-set-variant-unknown", "api", lambda s: get("lab.pretrain")(excerpt_texts(), variants="middle+nsp", steps=2),
        "refused", r"Unknown summary 'middle'"),
    Row("lab-set-variant-without-objective", "api", lambda s: get("lab.pretrain")(excerpt_texts(), variants="first"),
        "refused", r"A variant is SUMMARY\+OBJECTIVE"),
    Row("lab-compare-folder-outside-the-lab", "api", lambda s: get("lab.compare")(["/etc"]), "refused",
        r"'/etc' is not a clsviz lab model folder", (FileNotFoundError,)),
    Row("lab-compare-damaged-run-note", "api", lambda s: open_run(s.lab["damaged_note"]), "refused",
        r"holds a damaged lab run: its metrics\.csv or lab_run\.json cannot be read.*Pretrain it again"),
    Row("lab-model-summary-hand-edited", "api", lambda s: load_encoder(str(s.lab["middle"])), "refused",
        r"'clsviz_pretraining' entry is not one clsviz wrote.*'summary' is one of first, last, none",
        (ModelLoadError,)),
    Row("lab-model-objective-hand-edited", "api", lambda s: load_encoder(str(s.lab["objective"])), "refused",
        r"names an unknown sentence objective 'xyz'", (ModelLoadError,)),
    Row("lab-model-truncated-weights", "api", lambda s: load_encoder(str(s.lab["truncated"])), "refused",
        r"model\.safetensors is truncated", (ModelLoadError,)),
    # --- the lab, from the command line ------------------------------------------------------------------------
    Row("cli-pretrain-layers-zero", "cli", lambda s: _pretrain_args(s, "--layers", "0"), "refused",
        r"'layers' must be a whole number from 1 to 24, got 0"),
    Row("cli-pretrain-layers-10000", "cli", lambda s: _pretrain_args(s, "--layers", "10000"), "refused",
        r"'layers' must be a whole number from 1 to 24, got 10000"),
    Row("cli-pretrain-hidden-not-divisible", "cli", lambda s: _pretrain_args(s, "--hidden", "33"), "refused",
        r"must be a multiple of 'heads'"),
    Row("cli-pretrain-max-tokens-2", "cli", lambda s: _pretrain_args(s, "--max-tokens", "2"), "refused",
        r"'max_tokens' must be a whole number from 8 to 512"),
    Row("cli-pretrain-max-tokens-100000", "cli", lambda s: _pretrain_args(s, "--max-tokens", "100000"), "refused",
        r"'max_tokens' must be a whole number from 8 to 512"),
    Row("cli-pretrain-layers-not-a-number", "cli", lambda s: _pretrain_args(s, "--layers", "four"), "refused",
        r"--layers: invalid int value: 'four'"),
    Row("cli-pretrain-steps-negative", "cli", lambda s: _pretrain_args(s, "--steps", "-5"), "refused",
        r"--steps"),
    Row("cli-pretrain-steps-huge", "cli", lambda s: _pretrain_args(s, "--steps", "1000000000000"), "refused",
        r"steps must be a whole number from 1 to 10000000"),
    Row("cli-pretrain-summary-middle", "cli", lambda s: _pretrain_args(s, "--summary", "middle"), "refused",
        r"--summary: invalid choice: 'middle'"),
    Row("cli-pretrain-variant-unknown", "cli", lambda s: _pretrain_args(s, "--variants", "middle+nsp"), "refused",
        r"--variants: Unknown summary 'middle'"),
    Row("cli-pretrain-corpus-one-word", "cli", lambda s: _pretrain_args(s, "--corpus", _write(s.tmp, "w.txt", "word\n")),
        "refused", r"needs running text"),
    Row("cli-pretrain-corpus-special-tokens", "cli",
        lambda s: _pretrain_args(s, "--corpus", _write(s.tmp, "sp.txt", f"{SPECIALS}\n{SPECIALS}\n")), "refused",
        r"only special-token strings"),
    Row("cli-pretrain-corpus-10mb-one-line", "cli",
        lambda s: _pretrain_args(s, "--corpus", _write(s.tmp, "big.txt", TEN_MB_LINE + "\n")), "refused",
        r"needs running text"),
    Row("cli-pretrain-corpus-missing", "cli", lambda s: _pretrain_args(s, "--corpus", str(s.tmp / "nope.txt")),
        "refused", r"--corpus: no file"),
    Row("cli-pretrain-out-non-empty", "cli", lambda s: [*_pretrain_args(s), "--out", _full_folder(s)], "refused",
        r"--out: '.*full' already exists and is not empty"),
    Row("cli-pretrain-out-is-a-file", "cli", lambda s: [*_pretrain_args(s), "--out", _write(s.tmp, "f", "x")],
        "refused", r"--out: '.*f' is a file; give a new folder"),
    # --- the tuned lens, the inverter and the ladder, from the library ---------------------------------
    Row("lens-held-out-zero", "api", lambda s: tuned_lens(s.encoder, TEXTS, held_out=0), "refused",
        r"held_out must be a fraction between 0 and 1, got 0"),
    Row("lens-held-out-one", "api", lambda s: tuned_lens(s.encoder, TEXTS, held_out=1), "refused",
        r"held_out must be a fraction between 0 and 1, got 1"),
    Row("lens-pooling-unknown", "api", lambda s: tuned_lens(s.encoder, TEXTS, pooling="median"), "refused",
        r"Unknown pooling 'median'\. Valid: cls, mean"),
    Row("lens-fewer-texts-than-the-split", "api", lambda s: tuned_lens(s.encoder, TEXTS[:3]), "refused",
        r"3 texts leave 1 to fit the lens on; give at least 5 texts"),
    Row("lens-one-text-repeated", "api", lambda s: tuned_lens(s.encoder, ["same"] * 30), "refused",
        r"needs varied texts"),
    Row("lens-target-unknown", "api", lambda s: tuned_lens(s.encoder, TEXTS, target="middle"), "refused",
        r"Unknown lens target 'middle'\. Valid: final, logits"),
    Row("lens-logits-without-a-classifier", "api", lambda s: tuned_lens(s.encoder, TEXTS, target="logits"),
        "refused", r"has no classification head\. Load a fine-tuned classifier"),
    Row("inverter-steps-zero", "api", lambda s: train_inverter(s.encoder, TEXTS, steps=0), "refused",
        r"steps must be a whole number from 1 to 100,000, got 0"),
    Row("inverter-steps-huge", "api", lambda s: train_inverter(s.encoder, TEXTS, steps=10**12), "refused",
        r"steps must be a whole number from 1 to 100,000, got 1000000000000"),
    Row("inverter-steps-fraction", "api", lambda s: train_inverter(s.encoder, TEXTS, steps=2.5), "refused",
        r"steps must be a whole number"),
    Row("inverter-layer-above-range", "api", lambda s: train_inverter(s.encoder, TEXTS, layer=99, steps=2), "refused",
        r"layer 99 is outside 0\.\.2", (IndexError,)),
    Row("inverter-layer-below-range", "api", lambda s: train_inverter(s.encoder, TEXTS, layer=-10, steps=2),
        "refused", r"layer -10 is outside 0\.\.2", (IndexError,)),
    Row("inverter-pooling-unknown", "api", lambda s: train_inverter(s.encoder, TEXTS, pooling="median", steps=2),
        "refused", r"Unknown pooling 'median'"),
    Row("inverter-pooling-the-model-lacks", "api", lambda s: train_inverter(s.no_pooler, TEXTS, pooling="pooler",
                                                                             steps=2), "refused",
        r"has no pooler head; drop 'pooler' from the poolings"),
    Row("lens-pooling-the-model-lacks", "api", lambda s: tuned_lens(s.no_pooler, TEXTS, pooling="pooler"), "refused",
        r"has no pooler head"),
    Row("ladder-pooling-the-model-lacks", "api",
        lambda s: inversion_ladder(s.no_pooler, TEXTS, steps=2, poolings=("cls", "pooler")), "refused",
        r"has no pooler head"),
    Row("inverter-one-text", "api", lambda s: train_inverter(s.encoder, TEXTS[:1], steps=2), "refused",
        r"1 training text\(s\); an inverter needs at least 2"),
    Row("inverter-corrections-negative", "api", lambda s: s.inverter.invert(["a sentence"], corrections=-1),
        "refused", r"corrections must be a whole number from 0 to 50, got -1"),
    Row("inverter-corrections-huge", "api", lambda s: s.inverter.evaluate(TEXTS[:2], corrections=10**9),
        "refused", r"corrections must be a whole number from 0 to 50"),
    Row("inverter-vectors-wrong-dimension", "api", lambda s: s.inverter.invert(np.zeros((2, 7))), "refused",
        r"Expected texts or vectors of size 32 \(\[N, 32\] or \[32\]\); got shape \[2, 7\]"),
    Row("inverter-vectors-three-axes", "api", lambda s: s.inverter.invert(np.zeros((2, 3, 32))), "refused",
        r"Expected texts or vectors of size 32"),
    Row("inverter-vectors-nan", "api", lambda s: s.inverter.invert(np.full(32, np.nan)), "refused",
        r"NaN or infinite values"),
    Row("ladder-steps-zero", "api", lambda s: inversion_ladder(s.encoder, TEXTS, steps=0), "refused",
        r"steps must be a whole number from 1 to 100,000, got 0"),
    Row("ladder-steps-huge", "api", lambda s: inversion_ladder(s.encoder, TEXTS, steps=10**12), "refused",
        r"steps must be a whole number from 1 to 100,000"),
    Row("ladder-held-out-zero", "api", lambda s: inversion_ladder(s.encoder, TEXTS, steps=2, held_out=0), "refused",
        r"held_out must be a fraction between 0 and 1 \(the share of texts that score\), got 0"),
    Row("ladder-held-out-one", "api", lambda s: inversion_ladder(s.encoder, TEXTS, steps=2, held_out=1), "refused",
        r"held_out must be a fraction between 0 and 1"),
    Row("ladder-held-out-leaves-one-to-train", "api",
        lambda s: inversion_ladder(s.encoder, TEXTS, steps=2, held_out=0.98), "refused",
        r"leaves 1 to train on; the inverters need at least 2: lower held_out"),
    Row("ladder-corrections-negative", "api", lambda s: inversion_ladder(s.encoder, TEXTS, steps=2, corrections=-1),
        "refused", r"corrections must be a whole number from 0 to 50, got -1"),
    Row("ladder-layer-above-range", "api", lambda s: inversion_ladder(s.encoder, TEXTS, steps=2, layers=[99]),
        "refused", r"layer 99 is outside 0\.\.2", (IndexError,)),
    Row("ladder-layers-unknown", "api", lambda s: inversion_ladder(s.encoder, TEXTS, steps=2, layers="most"),
        "refused", r"Unknown layer choice 'most'\. Valid: all, every_other, last"),
    Row("ladder-pooling-unknown", "api", lambda s: inversion_ladder(s.encoder, TEXTS, steps=2, poolings=("median",)),
        "refused", r"Unknown pooling 'median'"),
    Row("ladder-fewer-texts-than-it-needs", "api", lambda s: inversion_ladder(s.encoder, TEXTS[:10], steps=2),
        "refused", r"10 different non-empty texts; the ladder needs at least 20"),
    Row("inverter-analysis-layer-above-range", "api",
        lambda s: get("inversion.inverter").validate(s.encoder, TEXTS, layer=99), "refused",
        r"layer 99 is outside 0\.\.2"),
    Row("inverter-analysis-steps-zero", "api", lambda s: get("inversion.inverter")(s.encoder, TEXTS, steps=0),
        "refused", r"steps must be a whole number from 1 to 100,000, got 0"),
    Row("ladder-analysis-corrections-negative", "api",
        lambda s: get("inversion.ladder")(s.encoder, TEXTS, steps=2, corrections=-3), "refused",
        r"corrections must be a whole number from 0 to 50, got -3"),
    # --- the lens and the inverter, from the command line -----------------------------------------------------
    Row("cli-lens-held-out-zero", "cli", lambda s: ["lens", _corpus(s.tmp, 30), "--held-out", "0"], "refused",
        r"--held-out must lie between 0 and 1, got 0"),
    Row("cli-lens-held-out-one", "cli", lambda s: ["lens", _corpus(s.tmp, 30), "--held-out", "1"], "refused",
        r"--held-out must lie between 0 and 1, got 1"),
    Row("cli-lens-held-out-text", "cli", lambda s: ["lens", _corpus(s.tmp, 30), "--held-out", "most"], "refused",
        r"--held-out takes a fraction such as 0\.2, got 'most'"),
    Row("cli-lens-pooling-unknown", "cli", lambda s: ["lens", _corpus(s.tmp, 30), "--pooling", "median"], "refused",
        r"--pooling: invalid choice: 'median'"),
    Row("cli-lens-fewer-texts-than-the-split", "cli",
        lambda s: ["lens", _corpus(s.tmp, 3), "--model", str(s.model_dir), "--quiet"], "refused",
        r"3 texts leave 1 to fit the lens on"),
    Row("cli-invert-steps-zero", "cli", lambda s: ["invert", _corpus(s.tmp, 30), "--steps", "0"], "refused",
        r"--steps"),
    Row("cli-invert-steps-huge", "cli", lambda s: ["invert", _corpus(s.tmp, 30), "--steps", "1000000000"],
        "refused", r"steps must be a whole number from 1 to 100,000"),
    Row("cli-invert-corrections-negative", "cli", lambda s: ["invert", _corpus(s.tmp, 30), "--corrections", "-1"],
        "refused", r"corrections must be a whole number from 0 to 50, got -1"),
    Row("cli-invert-layer-above-range", "cli",
        lambda s: ["invert", _corpus(s.tmp, 30), "--model", str(s.model_dir), "--layer", "99", "--quiet"], "refused",
        r"--layer: layer 99 is outside 0\.\.2"),
    Row("cli-invert-pooling-unknown", "cli",
        lambda s: ["invert", _corpus(s.tmp, 30), "--model", str(s.model_dir), "--pooling", "median", "--quiet"],
        "refused", r"Unknown pooling 'median'"),
    Row("cli-invert-held-out-one", "cli", lambda s: ["invert", _corpus(s.tmp, 30), "--held-out", "1"], "refused",
        r"--held-out must lie between 0 and 1"),
    Row("cli-invert-ladder-fewer-texts-than-it-needs", "cli",
        lambda s: ["invert", _corpus(s.tmp, 10), "--model", str(s.model_dir), "--ladder", "--quiet"], "refused",
        r"10 different non-empty texts; the ladder needs at least 20"),
    Row("cli-invert-html-without-ladder", "cli",
        lambda s: ["invert", _corpus(s.tmp, 30), "--html", str(s.tmp / "l.html")], "refused",
        r"--html draws the ladder's figure: add --ladder"),
    # --- the pages ------------------------------------------------------------------------------------------
    Row("page-lab-corpus-one-word", "page", "corpus_one_word", "refused", r"needs running text"),
    Row("page-lab-corpus-special-tokens", "page", "corpus_specials", "refused", r"only special-token strings"),
    Row("page-lab-corpus-10mb-one-line", "page", "corpus_10mb", "refused", r"needs running text"),
    Row("page-lab-steps-negative", "page", "steps_negative", "served"),
    Row("page-lab-steps-huge", "page", "steps_huge", "served"),
    Row("page-lab-size-unknown", "page", "size_unknown", "served"),
    Row("page-lab-variants-unknown", "page", "variants_unknown", "served"),
    Row("page-lab-checkpoints-text", "page", "checkpoints_text", "served"),
    Row("page-lab-compare-folder-outside-the-lab", "page", "compare_outside", "served"),
    Row("page-lab-compare-damaged-run", "page", "compare_damaged", "refused", r"holds a damaged lab run"),
    Row("page-lab-model-summary-hand-edited", "page", "model_middle", "refused",
        r"'clsviz_pretraining' entry is not one clsviz wrote"),
    Row("page-lab-model-truncated-weights", "page", "model_truncated", "refused", r"model\.safetensors is truncated"),
    Row("page-ladder-fewer-texts-than-it-needs", "page", "ladder_few", "refused",
        r"10 different non-empty texts; the ladder needs at least 20"),
]

API = [r for r in ROWS if r.surface == "api"]
CLI = [r for r in ROWS if r.surface == "cli"]
PAGES = [r for r in ROWS if r.surface == "page"]


def _ids(rows):
    return [r.id for r in rows]


def test_the_table_is_well_formed():
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert {r.surface for r in ROWS} == {"api", "cli", "page"}
    assert {r.outcome for r in ROWS} <= {"refused", "served"}
    assert all(r.message for r in ROWS if r.outcome == "refused")


# ------------------------------------------------------------------------------------------
# fixtures: a tiny encoder, a tiny trained inverter, a lab run and damaged copies of it
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_home(tmp_path_factory):
    """A lab folder and a corpora folder of this module's own (the Lab page reads both)."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("hostile-lab-home")
    mp.setenv("CLSVIZ_LAB_DIR", str(home / "lab"))
    mp.setenv("CLSVIZ_CORPORA_DIR", str(home / "corpora"))
    (home / "lab").mkdir()
    (home / "corpora").mkdir()
    yield home
    mp.undo()


@pytest.fixture(scope="module")
def lab_folders(lab_home):
    """A finished tiny lab run (two steps) and copies of it: the config's record edited by hand
    (summary "middle", an unknown objective), its weights cut in half, its run note damaged."""
    run = pretrain(excerpt_texts(), summary="first", sentence_objective="nsp", config=TINY_LAB, steps=2,
                   checkpoints=0, out=lab_home / "lab" / "good")  # fmt: skip
    folders = {"good": run.folder}

    def copy(name: str) -> Path:
        folder = lab_home / "lab" / name
        shutil.copytree(run.folder, folder)
        return folder

    for name, edit in (("middle", {"summary": "middle"}), ("objective", {"sentence_objective": "xyz"})):
        folder = copy(name)
        config = json.loads((folder / "config.json").read_text())
        config["clsviz_pretraining"].update(edit)
        (folder / "config.json").write_text(json.dumps(config))
        folders[name] = folder
    folders["truncated"] = copy("truncated")
    weights = folders["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    folders["damaged_note"] = copy("damaged_note")
    (folders["damaged_note"] / "lab_run.json").write_text('{"summary": "first", "ste')
    return folders


@pytest.fixture(scope="module")
def setting(tmp_path_factory, tiny_model_dirs, lab_folders):
    tmp = tmp_path_factory.mktemp("hostile-lab")
    encoder = load_encoder(str(tiny_model_dirs["bert"]))
    inverter = train_inverter(encoder, TEXTS[:6], steps=3, correction=False)
    no_pooler = load_encoder(str(tiny_model_dirs["distilbert"]))
    assert not no_pooler.info.has_pooler
    return Setting(tmp, encoder, Path(tiny_model_dirs["bert"]), inverter, lab_folders, no_pooler)


@pytest.fixture
def no_work(monkeypatch):
    """Training a tokenizer, building a lab model, embedding texts for a trained reader or building an
    inverter's decoder fails the test: a refusal must come before any of it."""

    def started(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} started before the input was refused")

        return fail

    import clsviz.experiments.inverter as inverter
    import clsviz.experiments.ladder as ladder
    import clsviz.experiments.lens as lens
    import clsviz.lab.training as training

    monkeypatch.setattr(training, "train_tokenizer", started("training a tokenizer"))
    monkeypatch.setattr(training, "build_model", started("building a lab model"))
    monkeypatch.setattr(inverter, "extract", started("embedding the training texts"))
    monkeypatch.setattr(inverter, "PrefixDecoder", started("building an inverter"))
    monkeypatch.setattr(ladder, "extract", started("embedding the held-out texts"))
    monkeypatch.setattr(lens, "extract", started("embedding the lens's texts"))


# ------------------------------------------------------------------------------------------
# the library and the command line
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", API, ids=_ids(API))
def test_the_library_refuses_before_any_work(row, setting, no_work):
    with pytest.raises(row.errors, match=row.message) as info:
        row.payload(setting)
    message = str(info.value)
    assert "Traceback" not in message and len(message) < 600, message
    assert not (setting.tmp / "new-run").exists(), "a folder was made for a refused run"


@pytest.mark.parametrize("row", CLI, ids=_ids(CLI))
def test_the_command_line_exits_2_with_the_message(row, setting, no_work, capsys):
    argv = row.payload(setting)
    try:
        code = cli_main(argv)
    except SystemExit as exc:  # argparse's own refusals (a choice, a number)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(row.message, err), err
    assert "Traceback" not in err
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
    if out is not None and out.name == "cli-out":
        assert not out.exists(), "a folder was made for a refused run"


# ------------------------------------------------------------------------------------------
# the pages
# ------------------------------------------------------------------------------------------

LAB_PAGE = "pages/13_Lab.py"
INVERSION_PAGE = "pages/6_Inversion.py"
SAMPLE_KEY = "inversion.sample." + demo_corpus().content_hash[:16]


def _lab_page(home: Path, corpus_text: str | None = None, **state):
    """The Lab page with ``corpus_text`` installed as the lab corpus (None: none installed)."""
    from ui.lab import corpus

    installed = home / "corpora" / "austen.txt"
    installed.unlink(missing_ok=True)
    if corpus_text is not None:
        installed.write_text(corpus_text, encoding="utf-8")
    corpus.clear()
    return open_page(LAB_PAGE, **{"lab.size": "tiny", **state})


def _start_lab(at):
    at.button(key="analysis.lab.pretrain.start").click().run()
    return at


def _model(folder):
    from ui.state import OTHER

    return {"clsviz.model": OTHER, "clsviz.custom_model": str(folder)}


PAGE_STEPS = {
    "corpus_one_word": lambda s, h: _start_lab(_lab_page(h, "word\n")),
    "corpus_specials": lambda s, h: _start_lab(_lab_page(h, f"{SPECIALS}\n{SPECIALS}\n\n{SPECIALS}\n")),
    "corpus_10mb": lambda s, h: _start_lab(_lab_page(h, TEN_MB_LINE + "\n")),
    "steps_negative": lambda s, h: _lab_page(h, **{"lab.steps": -5}),
    "steps_huge": lambda s, h: _lab_page(h, **{"lab.steps": 10**9}),
    "size_unknown": lambda s, h: _lab_page(h, **{"lab.size": "enormous"}),
    "variants_unknown": lambda s, h: _lab_page(h, **{"lab.variants": ["middle+nsp", "<b>x</b>"]}),
    "checkpoints_text": lambda s, h: _lab_page(h, **{"lab.checkpoints": "all of them"}),
    "compare_outside": lambda s, h: _lab_page(h, **{"lab.compare": ["/etc", "../../etc/passwd"]}),
    "compare_damaged": lambda s, h: _lab_page(h, **{"lab.compare": [str(s.lab["damaged_note"])]}),
    "model_middle": lambda s, h: _lab_page(h, **_model(s.lab["middle"])),
    "model_truncated": lambda s, h: _lab_page(h, **_model(s.lab["truncated"])),
    "ladder_few": lambda s, h: _ladder_page(s),
}


def _ladder_page(s: Setting):
    at = open_page(INVERSION_PAGE, "The weather was cold.", **_model(s.model_dir),
                   **{SAMPLE_KEY: 10, "inversion.section": "Trained inverter", "inversion.ladder.layers": "last"})  # fmt: skip
    at.button(key="analysis.inversion.ladder.start").click().run()
    return at


def _lab_widgets_hold_valid_values(at) -> None:
    from ui.lab import VARIANTS, lab_model_folders

    state = at.session_state
    assert isinstance(state["lab.steps"], int) and 10 <= state["lab.steps"] <= 20_000, state["lab.steps"]
    assert state["lab.size"] in ("default", "small", "tiny"), state["lab.size"]
    assert set(state["lab.variants"]) <= set(VARIANTS), state["lab.variants"]
    assert isinstance(state["lab.checkpoints"], int) and 2 <= state["lab.checkpoints"] <= 12, state["lab.checkpoints"]
    assert set(state["lab.compare"]) <= set(lab_model_folders()), state["lab.compare"]


def _said(at) -> list[str]:
    # st.error reads Markdown, so the message arrives with Markdown characters escaped.
    return [re.sub(r"\\(.)", r"\1", str(el.value)) for kind in ("error", "warning") for el in getattr(at, kind)]


@pytest.mark.parametrize("row", PAGES, ids=_ids(PAGES))
def test_the_page_says_why_and_keeps_serving(row, setting, lab_home):
    at = PAGE_STEPS[row.payload](setting, lab_home)
    assert not at.exception, at.exception
    said = _said(at)
    assert "Traceback" not in "\n".join(said)
    assert "<script>" not in "".join(m.value for m in at.markdown)
    if row.outcome == "refused":
        assert [m for m in said if re.search(row.message, m)], said
    else:  # a value the page did not produce: corrected or left out, nothing said in error
        assert not at.error, said
        _lab_widgets_hold_valid_values(at)
    # Nothing was queued, and the page still serves: it drew something or told the person what to do.
    started = at.session_state["clsviz.jobs"] if "clsviz.jobs" in at.session_state else {}
    assert not started, list(started)
    assert at.get("plotly_chart") or at.info or at.warning or at.error, "the page is blank"
    at.run()
    assert not at.exception, at.exception
