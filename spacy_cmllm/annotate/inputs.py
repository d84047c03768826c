"""Input rows of an annotation job: JSONL or Parquet, cut into fixed shards of rows.

A shard is a range of input rows, so that the same input always gives the same shards:
that is what lets a killed job skip the shards it already wrote, and lets local and Ray
runs write the same files. Reading validates every row; a row that cannot be annotated
becomes a reject with its reason instead of an exception, so one bad line never stops or
silently shrinks a job.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import CmllmError, CmllmImportError, Errors

FORMATS = ("jsonl", "parquet")
RAW_EXCERPT = 200  # characters of a rejected line kept in the rejects file


@dataclass(frozen=True)
class Shard:
    index: int
    start: int  # first input row (0-based line or row number)
    stop: int  # one past the last row
    offset: int = 0  # JSONL only: byte offset of row `start`
    end: int = 0  # JSONL only: byte offset one past row `stop - 1`

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Row:
    row: int
    text: str
    fields: dict[str, Any]  # carried-through fields (ids), in input order


def input_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise CmllmError(Errors.E050.format(path=str(path), why="expected a .jsonl or .parquet file"))


def plan_shards(path: Path, fmt: str, shard_size: int) -> list[Shard]:
    """Cut the input into shards of `shard_size` rows (the last one may be shorter)."""
    if not path.is_file():
        raise CmllmError(Errors.E050.format(path=str(path), why="no such file"))
    if fmt == "parquet":
        total = _parquet_file(path).metadata.num_rows
        return [Shard(i, start, min(start + shard_size, total)) for i, start in enumerate(range(0, total, shard_size))]
    shards: list[Shard] = []
    start_row, start_offset, row, offset = 0, 0, 0, 0
    with path.open("rb") as f:
        for line in f:
            row += 1
            offset += len(line)
            if row - start_row == shard_size:
                shards.append(Shard(len(shards), start_row, row, start_offset, offset))
                start_row, start_offset = row, offset
    if row > start_row:
        shards.append(Shard(len(shards), start_row, row, start_offset, offset))
    return shards


def read_shard(
    path: Path, fmt: str, shard: Shard, *, text_field: str, keep_fields: list[str] | None
) -> tuple[list[Row], list[dict[str, Any]]]:
    """The valid rows of a shard and the rejects ({"_row", "reason", "raw"})."""
    if fmt == "parquet":
        records = _read_parquet_rows(path, shard)
        return _validate(
            ((shard.start + i, record, None, None) for i, record in enumerate(records)), text_field, keep_fields
        )
    with path.open("rb") as f:
        f.seek(shard.offset)
        lines = f.read(shard.end - shard.offset).splitlines(keepends=True)
    return _validate(_parse_jsonl(lines, shard.start), text_field, keep_fields)


def _parse_jsonl(lines: list[bytes], first_row: int):
    for i, line in enumerate(lines):
        row = first_row + i
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield row, None, f"invalid UTF-8 at byte {err.start}", line.decode("utf-8", "replace")
            continue
        if not text.strip():
            yield row, None, "empty line", text
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            yield row, None, f"invalid JSON: {err.msg} at column {err.colno}", text
            continue
        yield row, record, None, text


def _validate(items, text_field: str, keep_fields: list[str] | None):
    rows: list[Row] = []
    rejects: list[dict[str, Any]] = []
    # items: (row, parsed record or None, reason it could not be parsed, raw line or None)
    for row, record, reason, raw in items:
        if reason is None:
            reason, text = _check_record(record, text_field)
        if reason is not None:
            if raw is None:
                raw = json.dumps(record, ensure_ascii=False, default=str)
            rejects.append({"_row": row, "reason": reason, "raw": _excerpt(raw)})
            continue
        names = [k for k in record if k != text_field] if keep_fields is None else keep_fields
        rows.append(Row(row, text, {name: record.get(name) for name in names}))
    return rows, rejects


def _check_record(record: Any, text_field: str) -> tuple[str | None, str]:
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}", ""
    if text_field not in record:
        return f"missing text field {text_field!r}", ""
    text = record[text_field]
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            return f"invalid UTF-8 in {text_field!r} at byte {err.start}", ""
    if text is None:
        return f"text field {text_field!r} is null", ""
    if not isinstance(text, str):
        return f"text field {text_field!r} is a {type(text).__name__}, not a string", ""
    try:
        # JSON may carry lone surrogates ("\ud800"), which no UTF-8 output can hold.
        json.dumps(record, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return "invalid Unicode (a lone surrogate escape)", ""
    return None, text


def _excerpt(raw: str) -> str:
    raw = raw.rstrip("\r\n")
    raw = raw.encode("utf-8", "replace").decode("utf-8")
    return raw if len(raw) <= RAW_EXCERPT else raw[:RAW_EXCERPT] + "…"


def _parquet_file(path: Path):
    pq = require_pyarrow("Reading Parquet")
    try:
        return pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several unrelated types for a damaged file
        raise CmllmError(Errors.E050.format(path=str(path), why=str(err))) from err


def _read_parquet_rows(path: Path, shard: Shard) -> list[dict[str, Any]]:
    """Rows start..stop, reading only the row groups that hold them."""
    parquet = _parquet_file(path)
    groups, first, seen = [], None, 0
    for g in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(g).num_rows
        if seen + size > shard.start and seen < shard.stop:
            groups.append(g)
            first = seen if first is None else first
        seen += size
    if not groups:
        return []
    assert first is not None  # set with the first group
    table = parquet.read_row_groups(groups)
    return table.slice(shard.start - first, shard.stop - shard.start).to_pylist()


def require_pyarrow(what: str):
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise CmllmImportError(Errors.E052.format(what=what, package="pyarrow", extra="parquet")) from err
    return pq
