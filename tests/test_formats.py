"""Corpus formats: CSV, TSV, Parquet, JSON Lines and Hugging Face data sets load the same rows and
labels; class labels keep their names; bad data sets get a clear message."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clsviz.cli import main
from clsviz.formats import load_dataset_corpus, load_table_corpus
from clsviz.readers import CorpusError, load_corpus

TEXTS = [
    "The film was not bad at all.",
    "A <b>bold</b> claim, with a comma",
    "Rain again in the city today.",
    "   ",  # empty: dropped by every reader
    "ünïcödé — 😀 fine",
    "The dog chased the boy.",
]
SENTIMENT = ["positive", "negative", "negative", "positive", "positive", "negative"]
STARS = [5, 1, 2, 4, 4, 1]
EXPECTED_TEXTS = tuple(t for t in TEXTS if t.strip())
KEEP = [i for i, t in enumerate(TEXTS) if t.strip()]


def _csv(delimiter: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter)
    w.writerow(["id", "text", "sentiment", "stars"])
    for i, (t, s, k) in enumerate(zip(TEXTS, SENTIMENT, STARS)):
        w.writerow([f"row-{i}", t, s, k])
    return buf.getvalue().encode()


def _parquet() -> bytes:
    table = pa.table(
        {
            "id": [f"row-{i}" for i in range(len(TEXTS))],
            "text": TEXTS,
            "sentiment": pa.array(SENTIMENT).dictionary_encode(),
            "stars": STARS,
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _jsonl() -> bytes:
    lines = [
        json.dumps({"id": f"row-{i}", "text": t, "sentiment": s, "stars": k}, ensure_ascii=False)
        for i, (t, s, k) in enumerate(zip(TEXTS, SENTIMENT, STARS))
    ]
    return ("\n".join(lines) + "\n").encode()


def _dataset():
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "sentiment": datasets.ClassLabel(names=["negative", "positive"]),
            "stars": datasets.Value("int64"),
        }
    )
    codes = [["negative", "positive"].index(s) for s in SENTIMENT]
    return datasets.Dataset.from_dict(
        {"id": [f"row-{i}" for i in range(len(TEXTS))], "text": TEXTS, "sentiment": codes, "stars": STARS},
        features=features,
    )


def _check(corpus) -> None:
    assert corpus.texts == tuple(t.strip() for t in EXPECTED_TEXTS)
    assert corpus.text_column == "text"
    assert corpus.labels == {
        "sentiment": tuple(SENTIMENT[i] for i in KEEP),
        "stars": tuple(str(STARS[i]) for i in KEEP),
    }


@pytest.mark.parametrize(
    "name, data",
    [
        ("c.csv", _csv(",")),
        ("c.tsv", _csv("\t")),
        ("c.parquet", _parquet()),
        ("c.jsonl", _jsonl()),
        ("c.ndjson", _jsonl()),
    ],
)
def test_every_file_format_loads_the_same_rows_and_labels(name, data):
    corpus = load_corpus(data, name)
    _check(corpus)
    assert any("empty" in m for m in corpus.messages)


def test_a_json_array_of_records_is_read_too():
    records = [json.loads(line) for line in _jsonl().decode().splitlines()]
    _check(load_table_corpus(json.dumps(records).encode(), "c.json"))


def test_datasets_folder_and_data_files_and_parquet_export_keep_class_names(tmp_path):
    import datasets

    ds = _dataset()
    datasets.DatasetDict({"train": ds, "test": ds.select(range(2))}).save_to_disk(str(tmp_path / "saved"))
    _check(load_dataset_corpus(str(tmp_path / "saved"), split="train"))
    ds.save_to_disk(str(tmp_path / "single"))
    _check(load_dataset_corpus(str(tmp_path / "single")))
    (tmp_path / "files" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "files" / "data" / "train-00000-of-00001.parquet"))
    _check(load_dataset_corpus(str(tmp_path / "files"), split="train"))
    # A Parquet file exported by datasets remembers the class names in its schema.
    _check(
        load_corpus((tmp_path / "files" / "data" / "train-00000-of-00001.parquet").read_bytes(), "x.parquet")
    )
    three = load_dataset_corpus(str(tmp_path / "saved"), split="train", max_rows=3)
    assert three.texts == EXPECTED_TEXTS[:3]


def test_the_cli_reads_datasets_and_table_files(tmp_path, capsys):
    import datasets

    datasets.DatasetDict({"validation": _dataset()}).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "c.jsonl").write_bytes(_jsonl())
    for source, extra in ((tmp_path / "saved", ["--split", "validation"]), (tmp_path / "c.jsonl", [])):
        code = main(["embed", str(source), *extra, "--out", str(tmp_path / f"{source.name}.npz"), "--quiet"])
        assert code == 0, capsys.readouterr().err
        assert "Labels: sentiment, stars" in capsys.readouterr().out


# -- bad input ---------------------------------------------------------------------------------------


def test_a_data_set_without_a_text_column(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"a": [1, 2, 3], "b": [[1], [2], [3]]}).save_to_disk(str(tmp_path / "numbers"))
    with pytest.raises(CorpusError, match="no text column"):
        load_dataset_corpus(str(tmp_path / "numbers"))
    with pytest.raises(CorpusError, match="no column 'sentence'"):
        load_dataset_corpus(str(tmp_path / "numbers"), text_column="sentence")
    with pytest.raises(CorpusError, match="no text column"):
        load_table_corpus(b'{"n": 1}\n{"n": 2}\n', "n.jsonl")


def test_an_empty_split_and_an_unknown_split(tmp_path):
    import datasets

    empty = datasets.Dataset.from_dict(
        {"text": []}, features=datasets.Features({"text": datasets.Value("string")})
    )
    datasets.DatasetDict({"train": _dataset(), "test": empty}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(CorpusError, match="empty: the split has no rows"):
        load_dataset_corpus(str(tmp_path / "d"), split="test")
    with pytest.raises(CorpusError, match="several splits.*--split"):
        load_dataset_corpus(str(tmp_path / "d"))
    (tmp_path / "f" / "data").mkdir(parents=True)
    _dataset().to_parquet(str(tmp_path / "f" / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(CorpusError, match="--split"):
        load_dataset_corpus(str(tmp_path / "f"), split="validation")


def test_an_uncached_hub_id_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CorpusError, match="not in the local data set cache.*HF_HUB_OFFLINE"):
        load_dataset_corpus("no-such-owner/no-such-set", config="x", split="train")
    code = main(
        [
            "embed",
            "glue/sst2",
            "--split",
            "validation",
            "--text-column",
            "sentence",
            "--out",
            str(tmp_path / "v"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "not in the local data set cache" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "name, data, match",
    [
        ("x.jsonl", b'{"text": "fine"}\n{"text": broken}\n', "line 2 is not valid JSON"),
        ("x.jsonl", b'["a list"]\n', "is not an object"),
        ("x.jsonl", b"", "empty"),
        ("x.parquet", b"PAR1 not really", "not a readable Parquet"),
        ("x.parquet", b"text\nhello\n", "does not start like a Parquet"),
        ("x.jsonl", b"\xff\xfe\x00bad", "not UTF-8"),
    ],
)
def test_broken_table_files(name, data, match):
    with pytest.raises(CorpusError, match=match):
        load_corpus(data, name)
