"""The output directory of an annotation job: one part file per shard, plus receipts.

    OUTPUT/part-00000.jsonl         annotated rows of shard 0 (or .parquet)
    OUTPUT/_rejects/00000.jsonl     rows of shard 0 that could not be annotated, with reasons
    OUTPUT/_receipts/00000.json     written LAST: shard 0 is complete, with its counts
    OUTPUT/_manifest.json           what job this is (input identity, model, settings)

Everything but the parts starts with "_", which dataset readers (pyarrow, Ray Data, Spark)
skip: OUTPUT can be read as one dataset as it is.

A shard counts as done only through its receipt, and every file is written to a temporary
name and renamed, so a job killed at any moment leaves either a complete shard or one that
the next run redoes from scratch and overwrites: no row is lost, none is written twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import CmllmError, CmllmRuntimeError, Errors
from .inputs import Shard, require_pyarrow

MANIFEST = "_manifest.json"
# Manifest fields that must match for a run to resume into an existing OUTPUT.
JOB_FIELDS = ("input_sha256", "input_bytes", "model", "text_field", "keep_fields", "shard_size", "format")


def input_identity(path: Path) -> dict[str, Any]:
    """Size and a hash of the first MiB: cheap, and catches a replaced or edited input."""
    with path.open("rb") as f:
        head = f.read(1 << 20)
    return {"input_bytes": path.stat().st_size, "input_sha256": hashlib.sha256(head).hexdigest()}


class ShardStore:
    def __init__(self, directory: Path, fmt: str):
        self.directory = Path(directory)
        self.format = fmt

    def open(self, manifest: dict[str, Any]) -> None:
        """Create the directory, or check that it holds this same job before resuming."""
        path = self.directory / MANIFEST
        if self.directory.exists() and not self.directory.is_dir():
            raise CmllmError(
                Errors.E040.format(name="OUTPUT", value=str(self.directory), why="exists and is not a directory")
            )
        if not path.exists() and self.directory.exists() and any(self.directory.iterdir()):
            raise CmllmError(
                Errors.E040.format(
                    name="OUTPUT",
                    value=str(self.directory),
                    why="is a directory with other files in it; give a new or empty one",
                )
            )
        if path.exists():
            found = json.loads(path.read_text())
            for name in JOB_FIELDS:
                if found.get(name) != manifest.get(name):
                    raise CmllmError(
                        Errors.E051.format(
                            path=str(self.directory), field=name, found=found.get(name), expected=manifest.get(name)
                        )
                    )
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, json.dumps(manifest, indent=2).encode("utf-8"))
        for name in ("_receipts", "_rejects"):
            (self.directory / name).mkdir(exist_ok=True)
        for stale in self.directory.glob("**/*.tmp"):
            stale.unlink()

    def part_path(self, index: int) -> Path:
        return self.directory / f"part-{index:05d}.{self.format}"

    def rejects_path(self, index: int) -> Path:
        return self.directory / "_rejects" / f"{index:05d}.jsonl"

    def receipt_path(self, index: int) -> Path:
        return self.directory / "_receipts" / f"{index:05d}.json"

    def is_done(self, index: int) -> bool:
        return self.receipt_path(index).exists()

    def write(self, shard: Shard, records: list[dict[str, Any]], rejects: list[dict[str, Any]]) -> dict[str, int]:
        index = shard.index
        for path, rows, writer in (
            (self.part_path(index), records, self._encode),
            (self.rejects_path(index), rejects, _encode_jsonl),
        ):
            if rows:
                _write_atomically(path, writer(rows))
            elif path.exists():  # left by an earlier, different attempt
                path.unlink()
        receipt = {"shard": index, "rows": shard.stop - shard.start, "written": len(records), "rejected": len(rejects)}
        if receipt["written"] + receipt["rejected"] != receipt["rows"]:
            raise CmllmRuntimeError(
                Errors.E053.format(
                    total=receipt["rows"],
                    accounted=receipt["written"] + receipt["rejected"],
                    written=receipt["written"],
                    rejected=receipt["rejected"],
                    missing=[index],
                )
            )
        _write_atomically(self.receipt_path(index), json.dumps(receipt).encode("utf-8"))
        return receipt

    def check_complete(self, shards: Sequence[Shard]) -> tuple[int, int]:
        """(written, rejected) over all shards; E053 unless every input row is accounted for."""
        written = rejected = 0
        missing = []
        for shard in shards:
            if not self.is_done(shard.index):
                missing.append(shard.index)
                continue
            receipt = json.loads(self.receipt_path(shard.index).read_text())
            written += receipt["written"]
            rejected += receipt["rejected"]
        total = sum(shard.stop - shard.start for shard in shards)
        if missing or written + rejected != total:
            raise CmllmRuntimeError(
                Errors.E053.format(
                    total=total, accounted=written + rejected, written=written, rejected=rejected, missing=missing[:10]
                )
            )
        return written, rejected

    def _encode(self, records: list[dict[str, Any]]) -> bytes:
        if self.format == "jsonl":
            return _encode_jsonl(records)
        pq = require_pyarrow("Writing Parquet")
        import pyarrow as pa

        # Fixed types for the annotation columns: inferred per shard, a shard without any
        # entity would type `entities` as list<null> and no longer concatenate with the others.
        fixed = {
            "_row": pa.int64(),
            "text": pa.string(),
            "tokens": pa.list_(pa.string()),
            "tags": pa.list_(pa.string()),
            "entities": pa.list_(pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string())])),
        }
        carried = [name for name in records[0] if name not in fixed]
        inferred = pa.Table.from_pylist([{name: r[name] for name in carried} for r in records]).schema
        schema = pa.schema(
            [inferred.field(name) for name in carried] + [pa.field(name, kind) for name, kind in fixed.items()]
        )
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(records, schema=schema), sink)
        return sink.getvalue().to_pybytes()


def _encode_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows).encode("utf-8")


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
