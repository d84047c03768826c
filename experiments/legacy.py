"""Rows and counts written before the one schema (rows.py), read under it.

Two schemas came before, told apart by their header:

* the sweep's (``dev_f1``, ``test_f1``, ...; benchmarks/results/conll03_recipe.csv and
  conll03_repetition.csv, and older files without some of its later columns): every
  score from raw text (``spacy evaluate``), so they go to the ``*_text`` columns; its
  ``epochs`` was nominal (``epochs_nominal``); its ``cpu`` said "cuda" for a GPU run.
* the study's (``dev_ner_f1``, ``budget``, ...; conll03_study.csv): test scores on gold
  tokens (the rule); a decoder's dev scores were the last evaluation of spaCy's loop
  (``*_training``), a baseline's were its best checkpoint scored on gold tokens. Its
  ``test_docs`` counted the documents scored (all of them), which is ``test_docs`` 0 here.

The sweep that wrote the first schema may still be appending to such a file: it is read,
not converted in place, until this harness appends a row to it.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .runs import DECODER, HEADS, STUDY_CONFIGS, SWEEP_CONFIGS

# The sweep's columns that kept their meaning, under their name here.
SWEEP_RENAMED = {
    "dev_f1": "dev_ner_f1_text",
    "test_f1": "test_ner_f1_text",
    "tag_acc": "test_tag_acc_text",
    "dev_tag_acc": "dev_tag_acc_text",
    "test_ents_f": "test_ents_f_text",
    "epochs": "epochs_nominal",
    "eval_seconds": "eval_seconds_text",
}
# The study's, likewise (its dev scores depend on the model, see study_row).
STUDY_RENAMED = {"budget": "max_steps", "tag_acc": "test_tag_acc", "cpu_capability": "cpu"}
STUDY_DEV = ("dev_ner_f1", "dev_chunk_f1", "dev_tag_acc")


def converter(header: Sequence[str], columns: Sequence[str]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """How a row of a file with ``header`` becomes a row under ``columns``."""
    if "test_f1" in header:
        return sweep_row
    if "budget" in header:
        return study_row
    unknown = sorted(set(header) - set(columns))
    if unknown:
        raise SystemExit(f"a CSV with unknown columns {unknown}: not a result file of this harness")
    return dict


def sweep_row(row: Mapping[str, Any]) -> dict[str, Any]:
    # Rows from before the head column trained spaCy's transition-based parser; rows from
    # before the overrides column, the shipped configs.
    head = row.get("head") or "parser"
    out = {SWEEP_RENAMED.get(name, name): value for name, value in row.items()}
    out.update(head=head, overrides=row.get("overrides") or "", config=SWEEP_CONFIGS[(row["model"], head)], phase="")
    if row.get("cpu") == "cuda":
        out.update(cpu="", device="cuda")
    return out


def study_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {STUDY_RENAMED.get(name, name): value for name, value in row.items()}
    config = STUDY_CONFIGS[row["model"]]
    out.update(config=config, head=HEADS[config], overrides="", dev_docs=0, test_docs=0)
    if row["model"] == DECODER:
        for name in STUDY_DEV:
            out[name + "_training"] = out.pop(name, "")
    return out


def counts_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """The key of a counts record under the row key: the study's older records named the
    model, unmask, seed, budget and batch words only."""
    return study_row(key) if "budget" in key else dict(key)
