"""The study's ledger: one JSON line per trial that ended (finished or pruned), appended,
never rewritten, so that it can be committed while a study runs and a study continued
elsewhere trains only what it lacks."""

import json
import os
from pathlib import Path
from typing import Any

from ..runs import run_name

LEDGER_METRICS = ("ents_f", "spans_chunks_f", "tag_acc", "score", "step", "epoch", "words", "seconds", "eval_round")


def study_id(setup: dict[str, Any]) -> dict[str, Any]:
    """What makes two trials of one run comparable: the budget and the base model (not the
    machine's paths)."""
    return {k: setup[k] for k in ("base_model", "batch_words", "max_steps", "eval_frequency", "baseline_steps")}


def ledger_entry(
    phase: str,
    setup: dict[str, Any],
    run: dict[str, Any],
    status: str,
    metrics: dict[str, Any],
    record: dict[str, Any] | None,
) -> dict[str, Any]:
    kept = {k: v for k, v in (metrics or {}).items() if k in LEDGER_METRICS}
    record = {k: v for k, v in record.items() if k != "model_dir"} if record else None
    return {
        "phase": phase,
        "study": study_id(setup),
        "run": run,
        "status": status,
        "eval_round": kept.get("eval_round"),
        "metrics": kept,
        "record": record,
    }


class Ledger:
    """--ledger: the trials of one study (its study_id) that ended, per phase."""

    def __init__(self, path: Path, setup: dict[str, Any]) -> None:
        self.path, self.id = Path(path), study_id(setup)

    def entries(self, phase: str) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        found = {}
        for line in self.path.read_text().splitlines():
            entry = json.loads(line) if line.strip() else None
            if entry and entry["phase"] == phase and entry["study"] == self.id:
                found[run_name(entry["run"])] = entry
        return found

    def outcomes(self, phase: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = self.entries(phase)
        return [
            {k: found[run_name(r)][k] for k in ("run", "status", "eval_round", "metrics", "record")}
            for r in runs
            if run_name(r) in found
        ]

    def add(self, phase: str, setup: dict[str, Any], outcome: dict[str, Any]) -> None:
        if run_name(outcome["run"]) in self.entries(phase):
            return
        entry = ledger_entry(phase, setup, outcome["run"], outcome["status"], outcome["metrics"], outcome["record"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())


def stopped_runs(rungs: Any | None) -> list[str]:
    """The runs the screening scheduler stopped (pruned), from its state file."""
    return json.loads(Path(rungs).read_text()).get("stopped", []) if rungs and Path(rungs).exists() else []
