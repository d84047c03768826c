"""The one CSV row schema of both harnesses, and the files that hold rows and counts.

A row is one finished run. Its key (``KEY``) says what was trained on which budget; a
harness skips a run whose key is already in its CSV. Scores are percentages, "" where
there is none (a task the config has no component for, a split not scored or not read).

Scores on the gold tokens (the rule, see scoring.py): ``dev_ner_f1``, ``dev_chunk_f1``,
``dev_tag_acc``, ``test_ner_f1``, ``test_chunk_f1``, ``test_tag_acc``. The same from raw
text, where the run asked for them: the ``*_text`` columns, and ``test_ents_f_text``
(spaCy's exact-match entity F1). ``*_training``: the last evaluation of spaCy's training
loop on the full dev set (raw text, spaCy's span F1): what the study's scheduler read.
``epochs``: the words spaCy's loop trained on over the training words; ``epochs_nominal``
only in rows of the sweep before this schema (steps x batch words, capped at one epoch).

Rows written before this schema (the sweep's and the study's own CSVs) are read through
legacy.py, so every reader sees this schema; appending to such a file rewrites it once
under this header first (the study's count of scored test documents, which its counts
file holds, is the one value that does not carry over).
"""

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import legacy
from .runs import HEADS, is_decoder
from .scoring import tasks_of, total

KEY = ("model", "config", "unmask", "overrides", "seed", "max_steps", "batch_words", "dev_docs", "test_docs")
COLUMNS = KEY + (
    "head",
    "phase",
    "dev_ner_f1",
    "dev_chunk_f1",
    "dev_tag_acc",
    "test_ner_f1",
    "test_chunk_f1",
    "test_tag_acc",
    "dev_ner_f1_text",
    "dev_chunk_f1_text",
    "dev_tag_acc_text",
    "test_ner_f1_text",
    "test_chunk_f1_text",
    "test_tag_acc_text",
    "test_ents_f_text",
    "dev_ner_f1_training",
    "dev_chunk_f1_training",
    "dev_tag_acc_training",
    "epochs",
    "epochs_nominal",
    "eval_rounds",
    "train_seconds",
    "eval_seconds",
    "eval_seconds_text",
    "dev_tokens",
    "test_tokens",
    "cpu",
    "device",
    "finished",
)
# A task's score in a column's name (dev_ner_f1, test_tag_acc_text, ...).
SCORES = {"ner": "ner_f1", "chunks": "chunk_f1", "pos": "tag_acc"}
# spaCy's names of the scores its loop reports, per task (the study's ledger keeps them).
TRAINING_SCORES = {"ner": "ents_f", "chunks": "spans_chunks_f", "pos": "tag_acc"}


def pct(value: float | None) -> Any:
    return "" if value is None else round(100 * float(value), 2)


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(str(row[name]) for name in KEY)


def key_fields(run: dict[str, Any], config: str, budget: Mapping[str, Any]) -> dict[str, Any]:
    """The key of the row that ``run`` of ``config`` under ``budget`` gets."""
    return {
        "model": run["model"],
        "config": config,
        "unmask": run["unmask"] if is_decoder(run) else run["model"],
        "overrides": run.get("overrides") or "",
        "seed": run["seed"],
        **{k: budget[k] for k in KEY[5:]},
    }


def make_row(record: dict[str, Any], *, metrics: dict[str, Any] | None = None, test: bool = True) -> dict[str, Any]:
    """A finished run's row from its record (trial.py), with the last evaluation that
    spaCy's loop reported (``metrics``, the study's) and, unless ``test`` is False (a
    study run that is not a finalist: its test set is not read), its test scores."""
    run, config, scores = record["run"], record["config"], record.get("scores") or {}
    tasks = tasks_of(config)
    row: dict[str, Any] = {
        **key_fields(run, config, record["budget"]),
        "head": HEADS[config],
        "phase": run.get("phase") or "",
        "epochs": round(record["words"] / record["train_words"], 3)
        if record.get("words") and record.get("train_words")
        else "",
        "train_seconds": record["train_seconds"],
        "eval_seconds": scores.get("eval_seconds", ""),
        "eval_seconds_text": scores.get("eval_seconds_text", ""),
        "cpu": record["cpu_capability"],
        "device": record["device"],
        "finished": record["finished"],
    }
    for split in ("dev", "test") if test else ("dev",):
        text = (scores.get("text") or {}).get(split) or {}
        for task in tasks:
            counts = scores.get(split, {}).get(task)
            row[f"{split}_{SCORES[task]}"] = pct(total(counts, task)) if counts else ""
            row[f"{split}_{SCORES[task]}_text"] = pct(text.get(SCORES[task]))
        row[f"{split}_tokens"] = scores.get("tokens", {}).get(split, "")
    if test:
        row["test_ents_f_text"] = pct(((scores.get("text") or {}).get("test") or {}).get("ents_f"))
    if metrics:
        row["eval_rounds"] = metrics.get("eval_round", "")
        row.update({f"dev_{SCORES[task]}_training": pct(metrics.get(TRAINING_SCORES[task])) for task in tasks})
    return {name: row.get(name, "") for name in COLUMNS}


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV under this schema, whichever schema the file was written in."""
    if not Path(path).exists():
        return []
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        convert = legacy.converter(reader.fieldnames or [], COLUMNS)
        return [{name: str(row.get(name, "")) for name in COLUMNS} for row in map(convert, reader)]


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append a row, flushed to disk; a file written under another schema is first
    rewritten under this one (its rows converted), so that appended rows line up."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != list(COLUMNS):
            rewrite(path, read_rows(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({name: row.get(name, "") for name in COLUMNS})
        f.flush()
        os.fsync(f.fileno())


def replace_row(path: Path, row: dict[str, Any]) -> None:
    """Put ``row`` in the place of the file's row of the same key (a screened run's
    dev-only row that gains its test scores once the run is named a reference)."""
    key = row_key(row)
    rows = read_rows(path)
    if key not in {row_key(r) for r in rows}:
        raise ValueError(f"{path}: no row {key} to replace")
    rewrite(path, [{name: row.get(name, "") for name in COLUMNS} if row_key(r) == key else r for r in rows])


def rewrite(path: Path, rows: list[dict[str, Any]]) -> None:
    """The whole file under this schema, swapped in at once: an interruption leaves the
    old file or the new one, never half of either."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def read_counts(path: Path) -> dict[tuple, dict[str, Any]]:
    """Per row key, the per-document counts of a scored run (JSONL; keys written before
    this schema are read through legacy.py)."""
    if not Path(path).exists():
        return {}
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return {row_key(legacy.counts_key(r["key"])): r for r in records}


def append_counts(path: Path, row: dict[str, Any], scores: dict[str, Any], splits=("dev", "test")) -> None:
    """Append a run's per-document counts of ``splits``, keyed by its row's key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"key": {k: row[k] for k in KEY}, **{k: scores[k] for k in splits if k in scores}}
    with path.open("a") as f:
        f.write(json.dumps(record, separators=(",", ":")) + "\n")
