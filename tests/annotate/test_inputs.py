import json

import pytest

from spacy_cmllm.annotate.inputs import input_format, plan_shards, read_shard
from tests.annotate.conftest import make_rows
from tests.requirements import require

BAD = (1, 4, 5, 6, 7, 8, 9, 12)
REASONS = [
    "invalid UTF-8",
    "invalid JSON",
    "not a JSON object",
    "missing text field",
    "is null",
    "not a string",
    "lone surrogate",
    "empty line",
]


def test_shards_cover_every_line_once(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(make_rows(23))
    shards = plan_shards(path, "jsonl", 5)
    assert [(s.start, s.stop) for s in shards] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    rows = [row for s in shards for row in read_shard(path, "jsonl", s, text_field="text", keep_fields=None)[0]]
    expected = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r.row for r in rows] == list(range(23))
    assert [r.text for r in rows] == [e["text"] for e in expected]
    assert rows[7].fields == {"id": "doc-7", "source": 1}


def test_last_line_without_newline_and_empty_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(make_rows(3).rstrip(b"\n"))
    shards = plan_shards(path, "jsonl", 2)
    assert [(s.start, s.stop) for s in shards] == [(0, 2), (2, 3)]
    assert read_shard(path, "jsonl", shards[1], text_field="text", keep_fields=None)[0][0].row == 2
    path.write_bytes(b"")
    assert plan_shards(path, "jsonl", 2) == []


def test_bad_rows_become_rejects_with_reasons(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(make_rows(14, bad=BAD))
    (shard,) = plan_shards(path, "jsonl", 100)
    rows, rejects = read_shard(path, "jsonl", shard, text_field="text", keep_fields=None)
    assert [r["_row"] for r in rejects] == list(BAD)
    for reject, reason in zip(rejects, REASONS):
        assert reason in reject["reason"], reject
    assert sorted([r.row for r in rows] + [r["_row"] for r in rejects]) == list(range(14))


def test_text_field_and_keep_fields(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"body": "Hello there", "id": 1, "lang": "en"}\n{"text": "no body", "id": 2}\n')
    (shard,) = plan_shards(path, "jsonl", 10)
    rows, rejects = read_shard(path, "jsonl", shard, text_field="body", keep_fields=["id"])
    assert [(r.text, r.fields) for r in rows] == [("Hello there", {"id": 1})]
    assert rejects[0]["_row"] == 1 and "missing text field 'body'" in rejects[0]["reason"]


def test_parquet_shards_across_row_groups(tmp_path):
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    path = tmp_path / "in.parquet"
    texts = [f"Text number {i} ." if i != 5 else None for i in range(17)]
    pq.write_table(pa.table({"id": list(range(17)), "text": texts}), path, row_group_size=4)
    shards = plan_shards(path, "parquet", 6)
    assert [(s.start, s.stop) for s in shards] == [(0, 6), (6, 12), (12, 17)]
    got, rejected = [], []
    for shard in shards:
        rows, rejects = read_shard(path, "parquet", shard, text_field="text", keep_fields=None)
        got += [(r.row, r.text, r.fields["id"]) for r in rows]
        rejected += rejects
    assert got == [(i, t, i) for i, t in enumerate(texts) if t is not None]
    assert [r["_row"] for r in rejected] == [5] and "null" in rejected[0]["reason"]


def test_unknown_input_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="E050.*jsonl or .parquet"):
        input_format(tmp_path / "in.csv")
    with pytest.raises(ValueError, match="E050.*no such file"):
        plan_shards(tmp_path / "missing.jsonl", "jsonl", 10)


def test_carried_fields_never_overwrite_the_annotation():
    import spacy

    from spacy_cmllm.annotate.inputs import Row
    from spacy_cmllm.annotate.job import doc_record

    doc = spacy.blank("en")("Hello world")
    record = doc_record(Row(4, "Hello world", {"id": 1, "tokens": ["mine"], "_row": 99}), doc)
    assert record["tokens"] == ["Hello", "world"] and record["_row"] == 4
    assert record["input_tokens"] == ["mine"] and record["input__row"] == 99 and record["id"] == 1
