"""One row schema: rows of the sweep's and the study's own older CSVs (and counts) read
under it with every value in the column of its meaning, a file migrated once when a row
is appended to it, and a record made into a row."""

import csv
import json

from experiments import rows
from tests.scripts import ROOT

RESULTS = ROOT / "benchmarks" / "results"
# The study's CSV as it stood before the harness first appended to it (and migrated it).
STUDY_BEFORE = ROOT / "tests" / "experiments" / "data" / "conll03_study_before_migration.csv"


def raw(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_file_in_the_schema_reads_as_written():
    # Both were migrated when the harness first appended to them.
    for name in ("conll03_repetition.csv", "conll03_study.csv"):
        path = RESULTS / name
        assert raw(path) and rows.read_rows(path) == raw(path)


def test_the_sweeps_committed_rows_read_as_raw_text_scores():
    for name in ("conll03_recipe.csv", "archive/conll03_sweep.csv"):
        old, new = raw(RESULTS / name), rows.read_rows(RESULTS / name)
        assert len(new) == len(old) > 0 and all(list(r) == list(rows.COLUMNS) for r in new)
        for before, after in zip(old, new):
            assert (after["dev_ner_f1_text"], after["test_ner_f1_text"], after["test_tag_acc_text"]) == (
                before["dev_f1"],
                before["test_f1"],
                before["tag_acc"],
            )
            assert after["test_ner_f1"] == after["dev_ner_f1"] == "" and after["phase"] == ""
            assert after["epochs_nominal"] == before.get("epochs", "") and after["epochs"] == ""
            assert after["eval_seconds_text"] == before.get("eval_seconds", "") and after["eval_seconds"] == ""
            # The archived sweep predates the head column: spaCy's transition-based parser.
            head = before.get("head") or "parser"
            assert after["head"] == head and after["overrides"] == before.get("overrides", "")
            assert (
                after["config"] == {"bio_tagger": "default.cfg", "parser": "default-parser.cfg"}[head]
                if before["model"] == "smollm2"
                else after["config"] == before["model"] + ".cfg"
            )


def test_the_studys_older_rows_and_counts_read_under_one_key():
    old, new = raw(STUDY_BEFORE), rows.read_rows(STUDY_BEFORE)
    counts = rows.read_counts(RESULTS / "conll03_study_counts.jsonl")
    # The committed file's migration kept every row and value, in order.
    assert rows.read_rows(RESULTS / "conll03_study.csv")[: len(new)] == new
    for before, after in zip(old, new):
        assert (after["test_ner_f1"], after["test_chunk_f1"], after["test_tag_acc"]) == (
            before["test_ner_f1"],
            before["test_chunk_f1"],
            before["tag_acc"],
        )
        assert after["max_steps"] == before["budget"] and after["cpu"] == before["cpu_capability"]
        assert after["dev_docs"] == after["test_docs"] == "0" and after["epochs"] == before["epochs"]
        if before["model"] == "smollm2":
            # A decoder's dev scores were the training loop's last evaluation.
            assert after["config"] == "study.cfg" and after["dev_ner_f1"] == ""
            assert after["dev_ner_f1_training"] == before["dev_ner_f1"]
        else:
            # A baseline's best checkpoint was scored again, on the gold tokens.
            assert after["config"] == "spacy-cnn.cfg" and after["dev_ner_f1"] == before["dev_ner_f1"]
        if before["test_ner_f1"]:
            assert len(counts[rows.row_key(after)]["test"]["ner"]) == int(before["test_docs"])


def test_appending_migrates_an_older_file_once_without_losing_a_value(tmp_path):
    path = tmp_path / "sweep.csv"
    # A sweep CSV from before the overrides column.
    old = {
        "model": "smollm2",
        "head": "bio_tagger",
        "unmask": "0000",
        "seed": "0",
        "max_steps": "50",
        "batch_words": "256",
        "dev_docs": "25",
        "test_docs": "25",
        "dev_f1": "49.0",
        "test_f1": "50.0",
        "tag_acc": "90.0",
        "train_seconds": "100",
        "cpu": "cuda",
    }
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(old))
        writer.writeheader()
        writer.writerow(old)
    new = {**rows.read_rows(path)[0], "unmask": "0011", "overrides": "a.b=1", "test_ner_f1": "60.0", "device": "cpu"}
    rows.append_row(path, new)
    assert raw(path)[0].keys() == set(rows.COLUMNS) and list(raw(path)[0]) == list(rows.COLUMNS)
    read = rows.read_rows(path)
    assert [(r["unmask"], r["overrides"], r["test_ner_f1_text"], r["test_ner_f1"], r["head"]) for r in read] == [
        ("0000", "", "50.0", "", "bio_tagger"),
        ("0011", "a.b=1", "50.0", "60.0", "bio_tagger"),
    ]
    assert (read[0]["cpu"], read[0]["device"]) == ("", "cuda")
    assert rows.row_key(read[1]) in {rows.row_key(r) for r in read}


def record(scores, **extra):
    return {
        "run": {"model": "smollm2", "unmask": "0011", "seed": 1, "phase": "final"},
        "config": "study.cfg",
        "budget": {"max_steps": 4, "batch_words": 40, "dev_docs": 0, "test_docs": 0},
        "train_seconds": 60.0,
        "words": 150,
        "train_words": 100,
        "cpu_capability": "AMX",
        "device": "cpu",
        "finished": "now",
        "scores": scores,
        **extra,
    }


def test_a_record_makes_a_row():
    scores = {
        "dev": {"ner": [[1, 2, 2]], "chunks": [[2, 2, 2]], "pos": [[9, 10]]},
        "test": {"ner": [[3, 4, 4], [1, 2, 2]], "chunks": [[2, 2, 2]] * 2, "pos": [[9, 10]] * 2},
        "tokens": {"dev": 10, "test": 20},
        "eval_seconds": 1.5,
        "text": {
            "dev": {"ner_f1": 0.5, "chunk_f1": None, "tag_acc": 0.9, "ents_f": 0.5},
            "test": {"ner_f1": 0.7, "chunk_f1": 1.0, "tag_acc": 0.85, "ents_f": 0.75},
        },
        "eval_seconds_text": 2.0,
    }
    row = rows.make_row(record(scores), metrics={"eval_round": 2, "ents_f": 0.4, "tag_acc": 0.8})
    assert rows.row_key(row) == ("smollm2", "study.cfg", "0011", "", "1", "4", "40", "0", "0")
    assert (row["dev_ner_f1"], row["test_ner_f1"], row["test_chunk_f1"], row["test_tag_acc"]) == (
        50.0,
        66.67,
        100.0,
        90.0,
    )
    assert (row["test_ner_f1_text"], row["dev_chunk_f1_text"], row["test_ents_f_text"]) == (70.0, "", 75.0)
    assert (row["dev_ner_f1_training"], row["dev_chunk_f1_training"], row["eval_rounds"]) == (40.0, "", 2)
    assert (row["epochs"], row["head"], row["phase"], row["test_tokens"]) == (1.5, "bio_tagger", "final", 20)
    # A run whose test set is not read: dev scores only.
    hidden = rows.make_row(record(scores), test=False)
    assert hidden["dev_ner_f1"] == 50.0 and not any(hidden.get(k) for k in rows.COLUMNS if k.startswith("test_"))


def test_counts_land_under_the_rows_key(tmp_path):
    row = rows.make_row(record({"test": {"ner": [[1, 1, 1]]}}))
    rows.append_counts(tmp_path / "counts.jsonl", row, {"test": {"ner": [[1, 1, 1]]}, "tokens": {}})
    assert list(rows.read_counts(tmp_path / "counts.jsonl")) == [rows.row_key(row)]
    assert set(json.loads((tmp_path / "counts.jsonl").read_text())) == {"key", "test"}
