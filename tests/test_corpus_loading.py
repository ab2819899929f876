"""Corpora: the demo corpus and pairs against their CSVs and data card, and every kind of
upload load_corpus / load_pairs must read or refuse with a clear message."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from pathlib import Path

import pytest

from clsviz.corpus import Corpus, demo_corpus, demo_pairs
from clsviz.readers import CorpusError, limits_from_env, load_corpus, load_pairs

DATA = Path(__file__).resolve().parent.parent / "clsviz" / "data"
LABELS = ("topic", "sentiment", "form", "order")


def _csv_rows(name: str) -> list[dict]:
    with (DATA / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _card_counts() -> dict[str, dict[str, int]]:
    """Count tables of the data card: '### `column`' headings followed by '| value | n |' rows."""
    counts: dict[str, dict[str, int]] = {}
    current = None
    for line in (DATA / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = None
        heading = re.match(r"^###\s+`([a-z_]+)`", line)
        if heading:
            current = heading.group(1)
            counts[current] = {}
            continue
        row = re.match(r"^\|\s*`?([^|`]*?)`?\s*\|\s*([\d,]+)\s*\|", line)
        if current and row:
            counts[current][row.group(1)] = int(row.group(2).replace(",", ""))
    return counts


def _table(rows: list[list[str]], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


# --- the demo corpus and pairs ---------------------------------------------------------------


def test_demo_corpus_matches_its_csv():
    rows = _csv_rows("demo_corpus.csv")
    corpus = demo_corpus()
    assert len(rows) >= 800
    assert corpus.texts == tuple(r["text"] for r in rows)
    assert set(corpus.labels) == set(LABELS)
    for column in LABELS:
        assert corpus.labels[column] == tuple(r[column] for r in rows)
    assert len(set(corpus.texts)) == len(corpus.texts), "demo sentences repeat"
    assert all(t.strip() == t and t for t in corpus.texts)


def test_demo_labels_take_documented_values():
    corpus = demo_corpus()
    assert set(corpus.labels["sentiment"]) == {"positive", "negative"}
    assert set(corpus.labels["form"]) == {"question", "statement", "command"}
    assert set(corpus.labels["order"]) == {"", "person_agent", "animal_agent"}
    assert len(set(corpus.labels["topic"])) >= 6
    # The form label agrees with the punctuation a person would use.
    for text, form in zip(corpus.texts, corpus.labels["form"]):
        assert text.endswith("?") == (form == "question"), text


def test_demo_negation_and_contrast_are_present():
    corpus = demo_corpus()
    rows = list(zip(corpus.texts, corpus.labels["sentiment"]))
    negated_positive = [t for t, s in rows if s == "positive" and re.search(r"\bnot\b.*\bat all\b", t)]
    contrast_positive = [t for t, s in rows if s == "positive" and re.search(r"\bexpected\b.*\bbut\b", t)]
    negated_negative = [t for t, s in rows if s == "negative" and re.search(r"\bnot\b.*\bat all\b", t)]
    assert len(negated_positive) >= 10 and len(contrast_positive) >= 10 and len(negated_negative) >= 10


def test_demo_order_rows_come_in_swapped_pairs():
    corpus = demo_corpus()
    order = corpus.labels["order"]
    index = [i for i, v in enumerate(order) if v]
    assert len(index) >= 100 and len(index) % 2 == 0
    for a, b in zip(index[::2], index[1::2]):
        assert b == a + 1, "order pairs must be adjacent rows"
        assert {order[a], order[b]} == {"person_agent", "animal_agent"}
        words_a = sorted(re.findall(r"\w+", corpus.texts[a].lower()))
        words_b = sorted(re.findall(r"\w+", corpus.texts[b].lower()))
        assert words_a == words_b, "a pair must use the same words"
        assert corpus.texts[a] != corpus.texts[b]
        for column in ("topic", "sentiment", "form"):
            assert corpus.labels[column][a] == corpus.labels[column][b]


def test_data_card_counts_match_the_csvs():
    card = _card_counts()
    rows = _csv_rows("demo_corpus.csv")
    for column in LABELS:
        counted = Counter(r[column] or "(empty)" for r in rows)
        assert card[column] == dict(counted), column
    pairs = _csv_rows("demo_pairs.csv")
    assert card["kind"] == dict(Counter(r["kind"] for r in pairs))
    assert card["rows"] == {"sentences": len(rows), "pairs": len(pairs)}


def test_data_card_negation_contrast_and_pair_rules():
    card = (DATA / "README.md").read_text(encoding="utf-8")
    texts = [r["text"] for r in _csv_rows("demo_corpus.csv")]
    negation = r"\bnot\b|n't\b|\bnever\b|\bnothing\b|\bnobody\b|\bhardly\b|anything but|far from"
    contrast = r"\bbut\b|\byet\b|\binstead\b|\balthough\b"
    n_negation = sum(1 for t in texts if re.search(negation, t))
    n_contrast = sum(1 for t in texts if re.search(contrast, t))
    assert re.search(rf"\b{n_negation}\s+sentences contain a negation", card)
    assert re.search(rf"\band {n_contrast} a contrast", card)
    # The rule table: | kind | rule | score | pairs | summed per (kind, score).
    rules: Counter = Counter()
    for kind, score, n in re.findall(
        r"^\| (paraphrase|related|unrelated) \|[^\n]*\| ([\d.]+) \| (\d+) \|$", card, re.M
    ):
        rules[(kind, float(score))] += int(n)
    pairs = _csv_rows("demo_pairs.csv")
    assert rules == Counter((r["kind"], float(r["score"])) for r in pairs)


def test_demo_pairs():
    pairs = demo_pairs()
    raw = _csv_rows("demo_pairs.csv")
    assert list(pairs.columns) == ["sentence1", "sentence2", "score", "kind"]
    assert len(pairs) == len(raw) >= 150
    assert pairs["score"].tolist() == [float(r["score"]) for r in raw]
    assert pairs["score"].between(0, 5).all()
    assert set(pairs["kind"]) == {"paraphrase", "related", "unrelated"}
    ranges = {"paraphrase": (4, 5), "related": (2, 3), "unrelated": (0, 1)}
    for kind, (low, high) in ranges.items():
        assert pairs.loc[pairs["kind"] == kind, "score"].between(low, high).all(), kind
    assert (pairs["sentence1"] != pairs["sentence2"]).all()


def test_demo_pairs_read_by_load_pairs():
    pairs = load_pairs((DATA / "demo_pairs.csv").read_bytes(), "demo_pairs.csv")
    assert pairs.equals(demo_pairs())


def test_demo_csv_through_load_corpus_is_the_demo_corpus():
    corpus = load_corpus((DATA / "demo_corpus.csv").read_bytes(), "demo_corpus.csv")
    assert corpus.text_column == "text"
    assert corpus.label_names == LABELS
    assert corpus == demo_corpus() and corpus.content_hash == demo_corpus().content_hash
    assert corpus.messages == ()


# --- the Corpus object -----------------------------------------------------------------------


def test_corpus_hash_follows_content():
    a = Corpus(texts=("one", "two"), labels={"y": ("a", "b")}, name="a")
    same = Corpus(texts=["one", "two"], labels={"y": ["a", "b"]}, name="other name")
    other_label = Corpus(texts=("one", "two"), labels={"y": ("a", "a")})
    other_text = Corpus(texts=("one", "three"), labels={"y": ("a", "b")})
    assert a.content_hash == same.content_hash and a == same and hash(a) == hash(same)
    assert len({a.content_hash, other_label.content_hash, other_text.content_hash}) == 3
    assert re.fullmatch(r"[0-9a-f]{64}", a.content_hash)
    assert isinstance(same.texts, tuple) and isinstance(same.labels["y"], tuple)


def test_corpus_checks_label_lengths_and_subsets():
    with pytest.raises(ValueError, match="expected 2 values, got 1"):
        Corpus(texts=("one", "two"), labels={"y": ("a",)})
    corpus = demo_corpus()
    part = corpus.subset([5, 1, 3])
    assert part.texts == (corpus.texts[5], corpus.texts[1], corpus.texts[3])
    assert part.labels["topic"] == tuple(corpus.labels["topic"][i] for i in (5, 1, 3))
    assert corpus.subset(slice(0, 4)).texts == corpus.texts[:4]
    order = corpus.labelled("order")
    expected = [i for i, v in enumerate(corpus.labels["order"]) if v]
    assert order.texts == tuple(corpus.texts[i] for i in expected)
    assert set(order.labels["order"]) == {"person_agent", "animal_agent"}
    with pytest.raises(KeyError, match="topic, sentiment, form, order"):
        corpus.labelled("colour")
    assert (
        repr(corpus) == f"Corpus(name='demo corpus', texts={len(corpus)}, labels={list(LABELS)}, messages=0)"
    )
    frame = part.to_frame()
    assert list(frame.columns) == ["text", *LABELS] and frame["text"].tolist() == list(part.texts)


# --- CSV: column detection -------------------------------------------------------------------


def _mixed_csv() -> tuple[bytes, list[list[str]]]:
    rows = [["id", "code", "review", "stars", "lang"]]
    for i in range(30):
        rows.append(
            [
                str(i + 1),
                f"{123456789.123456 + i:.6f}",  # long but numeric: never the text column
                f"Review number {i} says the {'food' if i % 2 else 'room'} was fine",
                str(i % 5 + 1),
                "en" if i % 3 else "fr",
            ]
        )
    return _table(rows), rows


def test_text_column_is_the_longest_mostly_non_numeric_one():
    data, rows = _mixed_csv()
    corpus = load_corpus(data, "reviews.csv")
    assert corpus.text_column == "review"
    assert corpus.texts == tuple(r[2] for r in rows[1:])
    assert corpus.columns == tuple(rows[0])
    # id (all distinct) and code (numeric, all distinct) are not labels; stars and lang are.
    assert corpus.label_names == ("stars", "lang")
    assert corpus.labels["lang"] == tuple(r[4] for r in rows[1:])


def test_text_and_label_columns_can_be_chosen():
    data, rows = _mixed_csv()
    corpus = load_corpus(data, "reviews.csv", text_column="lang", label_columns=["stars"])
    assert corpus.texts == tuple(r[4] for r in rows[1:])
    assert corpus.label_names == ("stars",)
    with pytest.raises(CorpusError, match=r"no column 'comment'.*id, code, review, stars, lang"):
        load_corpus(data, "reviews.csv", text_column="comment")
    with pytest.raises(CorpusError, match="'colour'"):
        load_corpus(data, "reviews.csv", label_columns=["colour"])


def test_csv_without_a_text_column():
    data = _table([["x", "y"], ["1", "2.5"], ["3", "-4e3"], ["5", "6%"]])
    with pytest.raises(CorpusError, match=r"no text column.*x, y"):
        load_corpus(data, "numbers.csv")


@pytest.mark.parametrize(
    "delimiter,filename", [(";", "a.csv"), ("\t", "a.tsv"), ("\t", "a.csv"), ("|", "a.csv")]
)
def test_other_delimiters(delimiter, filename):
    rows = [
        ["sentence", "label"],
        ["Hello, world, again", "a"],
        ["Another one, with commas", "b"],
        ["Third", "a"],
    ]
    corpus = load_corpus(_table(rows, delimiter), filename)
    assert corpus.texts == tuple(r[0] for r in rows[1:])
    assert corpus.labels == {"label": ("a", "b", "a")}


def test_one_column_csv_keeps_commas_in_text():
    data = b'text\nThe cat, the dog and the bird.\n"Quoted, with ""quotes"" inside."\nPlain line\n'
    corpus = load_corpus(data, "one.csv")
    assert corpus.texts == ("The cat, the dog and the bird.", 'Quoted, with "quotes" inside.', "Plain line")
    assert corpus.labels == {}


def test_unnamed_and_repeated_columns_get_names():
    data = _table([["text", "", "text"], ["a long sentence here", "x", "b"], ["another sentence", "y", "c"]])
    corpus = load_corpus(data, "dup.csv")
    assert corpus.columns == ("text", "column 2", "text (2)")
    assert corpus.text_column == "text"


def test_html_stays_plain_text():
    rows = [
        ["<b>text</b>", "<i>label</i>"],
        ["<script>alert(1)</script> & more", "<u>x</u>"],
        ["Fish &amp; chips <br> tonight", "y"],
        ["**not bold** [link](http://x)", "y"],
    ]
    corpus = load_corpus(_table(rows), "html.csv")
    assert corpus.text_column == "<b>text</b>"
    assert corpus.texts == tuple(r[0] for r in rows[1:])
    assert corpus.labels == {"<i>label</i>": ("<u>x</u>", "y", "y")}


# --- encodings -------------------------------------------------------------------------------

SENTENCES = ["Café au lait, naïve façade.", "Smörgåsbord und Grüße", "Ordinary ASCII line"]


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s.encode("utf-8"),
        lambda s: codecs.BOM_UTF8 + s.encode("utf-8"),
        lambda s: s.encode("utf-16"),  # with BOM
        lambda s: codecs.BOM_UTF16_BE + s.encode("utf-16-be"),
        lambda s: s.encode("utf-16-le"),  # no BOM
    ],
    ids=["utf8", "utf8-bom", "utf16", "utf16-be-bom", "utf16-le-no-bom"],
)
def test_unicode_encodings(encode):
    text = "text,n\n" + "".join(f'"{s}",{i % 2}\n' for i, s in enumerate(SENTENCES))
    corpus = load_corpus(encode(text), "enc.csv")
    assert corpus.texts == tuple(SENTENCES)
    assert corpus.columns == ("text", "n")  # no BOM left in the first column name
    assert corpus.messages == ()
    txt = load_corpus(encode("\n".join(SENTENCES)), "enc.txt")
    assert txt.texts == tuple(SENTENCES)


def test_broken_unicode_after_a_bom():
    with pytest.raises(CorpusError, match="starts like UTF-8 but is not valid UTF-8"):
        load_corpus(codecs.BOM_UTF8 + "café".encode("latin-1"), "bom.txt")
    with pytest.raises(CorpusError, match="starts like UTF-16 but is not valid UTF-16"):
        load_corpus(codecs.BOM_UTF16_LE + b"a\x00\x00\xdc", "bom.txt")  # a lone low surrogate


def test_latin1_and_windows_1252_fallback():
    corpus = load_corpus("\n".join(SENTENCES).encode("latin-1"), "old.txt")
    assert corpus.texts == tuple(SENTENCES)
    assert any("not valid UTF-8" in m for m in corpus.messages)
    smart = "“Quoted” text – with a dash"
    corpus = load_corpus(smart.encode("cp1252"), "win.txt")
    assert corpus.texts == (smart,)


# --- bad files -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\n\t\r\n", codecs.BOM_UTF8, b"\xff\xfe"])
@pytest.mark.parametrize("filename", ["empty.csv", "empty.txt"])
def test_empty_files(data, filename):
    with pytest.raises(CorpusError, match="empty"):
        load_corpus(data, filename)


@pytest.mark.parametrize(
    "data,words",
    [
        (bytes(range(256)) * 4, "binary"),
        (b"text\nabc\x00\x01\x02def\n\x00\x00\x07\xff", "binary"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG"),
        (b"PK\x03\x04" + bytes(100), "Excel"),
        (b"%PDF-1.7\n" + b"x" * 100, "PDF"),
        (b"\x1f\x8b\x08" + bytes(50), "gzip"),
        (bytes([7, 8, 14, 15, 16, 17, 18, 19, 20, 21]) * 30, "binary"),
    ],
    ids=["all-bytes", "nul", "png", "xlsx", "pdf", "gzip", "control-chars"],
)
def test_binary_files(data, words):
    with pytest.raises(CorpusError, match=words):
        load_corpus(data, "upload.csv")


def test_malformed_csv_names_the_lines():
    data = b"text,label\nfine row,a\ntoo,many,fields,here\nok again,b\nanother,bad,row\n"
    with pytest.raises(CorpusError, match=r"header has 2 field.*lines 3, 5 have 3/4") as info:
        load_corpus(data, "bad.csv")
    assert "double quotes" in str(info.value)


def test_unclosed_quote():
    with pytest.raises(CorpusError, match="not a well-formed CSV"):
        load_corpus(b'text,label\n"never closed,a\nnext,b\n', "quote.csv")


def test_header_only_csv():
    with pytest.raises(CorpusError, match="header line but no rows"):
        load_corpus(b"text,label\n\n", "header.csv")


def test_unknown_extension():
    with pytest.raises(CorpusError, match=r"\.xlsx.*\.csv, \.tsv, \.txt, \.parquet or \.jsonl"):
        load_corpus(b"text\nhello\n", "sheet.xlsx")


# --- rows, limits, cleaning ------------------------------------------------------------------


def test_empty_rows_are_dropped_with_a_note():
    rows = [
        ["text", "label"],
        ["first", "a"],
        ["   ", "b"],
        ["second", "c"],
        ["", "d"],
        ["third", "a"],
        ["", ""],
        ["fourth", "c"],
    ]
    corpus = load_corpus(_table(rows), "gaps.csv")
    kept = [r for r in rows[1:] if r[0].strip()]
    assert corpus.texts == tuple(r[0] for r in kept)
    assert corpus.labels["label"] == tuple(r[1] for r in kept)
    assert any("3 empty rows dropped (rows 3, 5, 7)" in m for m in corpus.messages)


def test_excel_sep_hint_and_sentence_header():
    corpus = load_corpus(b'sep=;\ntext;label\nOne, two;a\nThree;b\nbad "row;a\n', "excel.csv")
    assert corpus.texts == ("One, two", "Three", 'bad "row') and corpus.labels == {"label": ("a", "b", "a")}
    with pytest.raises(CorpusError, match="line 4 has 3"):
        load_corpus(b"sep=;\ntext;label\nfine;a\nnot;fine;b\n", "excel.csv")
    corpus = load_corpus(b"The first sentence is not a header.\nSecond one.\nThird one.\n", "noheader.csv")
    assert corpus.texts == ("Second one.", "Third one.")
    assert any("read as the column name" in m and ".txt" in m for m in corpus.messages)


def test_txt_blank_lines_dropped_with_line_numbers():
    corpus = load_corpus(b"one\n\n  two  \n\t\nthree\r\n", "lines.txt")
    assert corpus.texts == ("one", "two", "three")
    assert any("lines 2, 4" in m for m in corpus.messages)
    assert corpus.columns == () and corpus.text_column is None
    with pytest.raises(CorpusError, match="no columns"):
        load_corpus(b"one\ntwo\n", "lines.txt", text_column="text")


def test_row_limit_keeps_the_first_rows():
    lines = [f"Sentence number {i}." for i in range(60)]
    corpus = load_corpus("\n".join(lines).encode(), "many.txt", max_rows=50)
    assert corpus.texts == tuple(lines[:50])
    assert any(m.startswith("60 lines; the first 50 are used — raise max_rows") for m in corpus.messages)
    rows = [["text", "y"]] + [[line, str(i % 2)] for i, line in enumerate(lines)]
    corpus = load_corpus(_table(rows), "many.csv", max_rows=7)
    assert corpus.texts == tuple(lines[:7]) and corpus.labels["y"] == tuple(str(i % 2) for i in range(7))
    assert any("60 rows; the first 7 are used" in m for m in corpus.messages)


def test_size_limit():
    data = ("a sentence\n" * 200).encode()
    with pytest.raises(CorpusError, match=r"2,200 bytes; the limit is 1,000 bytes.*max_bytes"):
        load_corpus(data, "big.txt", max_bytes=1000)
    assert len(load_corpus(data, "big.txt", max_bytes=len(data))) == 200


def test_long_texts_are_cut_with_a_note():
    long = "word " * 100
    corpus = load_corpus(f"short\n{long}\nalso short\n".encode(), "long.txt", max_chars=50)
    assert corpus.texts == ("short", long.strip()[:50].rstrip(), "also short")
    assert all(len(t) <= 50 for t in corpus.texts)
    assert any("1 text(s) longer than 50 characters were cut" in m and "line 2" in m for m in corpus.messages)


def test_a_cell_larger_than_the_csv_modules_limit_is_cut():
    huge = "word " * 40_000  # 200,000 characters: past the csv module's 128 KiB default
    corpus = load_corpus(_table([["text", "y"], [huge, "a"], ["short", "b"]]), "huge.csv", max_chars=100)
    assert corpus.texts == (huge[:100].rstrip(), "short")
    assert any("row 2" in m and "cut" in m for m in corpus.messages)


def test_repeated_texts_are_kept_with_a_note():
    corpus = load_corpus(b"same\nsame\nother\n", "rep.txt")
    assert corpus.texts == ("same", "same", "other")
    assert any("1 text(s) repeat" in m for m in corpus.messages)


def test_limits_from_env(monkeypatch):
    monkeypatch.setenv("CLSVIZ_MAX_ROWS", "12_000")
    monkeypatch.setenv("CLSVIZ_MAX_CHARS", "not a number")
    monkeypatch.delenv("CLSVIZ_MAX_BYTES", raising=False)
    assert limits_from_env() == {"max_rows": 12000, "max_bytes": 20_000_000, "max_chars": 2000}


# --- pairs -----------------------------------------------------------------------------------


def test_load_pairs_reads_scores_and_kind():
    rows = [
        ["Sentence1", "sentence2", "score", "kind"],
        ["a cat", "a dog", "2.5", "related"],
        ["hi there", "hello there", "4", "paraphrase"],
    ]
    pairs = load_pairs(_table(rows), "pairs.csv")
    assert pairs["sentence1"].tolist() == ["a cat", "hi there"]
    assert pairs["score"].tolist() == [2.5, 4.0]
    assert pairs["kind"].tolist() == ["related", "paraphrase"]


def test_load_pairs_names_bad_rows():
    rows = [
        ["sentence1", "sentence2", "score"],
        ["a", "b", "1"],
        ["c", "", "2"],
        ["e", "f", "high"],
        ["g", "h", "nan"],
    ]
    with pytest.raises(CorpusError, match=r"row 3 has an empty sentence; rows 4, 5 have a score"):
        load_pairs(_table(rows), "pairs.csv")
    with pytest.raises(CorpusError, match="score is missing"):
        load_pairs(_table([["sentence1", "sentence2"], ["a", "b"]]), "pairs.csv")
    with pytest.raises(CorpusError, match="empty"):
        load_pairs(b"", "pairs.csv")
    with pytest.raises(CorpusError, match="need a CSV"):
        load_pairs(b"a\nb\n", "pairs.txt")


def test_labelled_rows_keeps_the_labelled_and_says_what_was_left_out():
    from clsviz.corpus import labelled_rows

    keep, notes = labelled_rows(["a", "b", "c", "d"], ["x", None, "  ", "y"], "topic")
    assert keep == [0, 3]
    assert notes == ["2 of 4 texts have no 'topic' label and were left out."]
    assert labelled_rows(["a"], ["x"], "topic") == ([0], [])
    with pytest.raises(KeyError, match="1 labels for 2 texts"):
        labelled_rows(["a", "b"], ["x"], "topic", KeyError)
