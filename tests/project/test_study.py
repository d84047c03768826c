"""`spacy project run study` end to end on Ray Tune with a tiny decoder and tiny CoNLL data:
interrupted after one trial, resumed by Tune's restore without retraining it, interrupted
again, continued in a fresh checkout from the committed ledger, scored, summarised."""

import csv
import json
import shutil
import subprocess
import sys

import pytest

from experiments.rows import read_rows
from tests.processes import run_process_tree
from tests.project.test_workflow import copy_project
from tests.requirements import require
from tests.tiny import save_tiny_decoder

SENTENCES = [
    [
        ("John", "NNP", "B-NP", "B-PER"),
        ("lives", "VBZ", "B-VP", "O"),
        ("in", "IN", "B-PP", "O"),
        ("Paris", "NNP", "B-NP", "B-LOC"),
        (".", ".", "O", "O"),
    ],
    [
        ("Acme", "NNP", "B-NP", "B-ORG"),
        ("Corp", "NNP", "I-NP", "I-ORG"),
        ("hired", "VBD", "B-VP", "O"),
        ("Mary", "NNP", "B-NP", "B-PER"),
        (".", ".", "O", "O"),
    ],
]


def conll(n_docs: int) -> str:
    lines = []
    for d in range(n_docs):
        lines += ["-DOCSTART- -X- -X- O", ""]
        for sentence in SENTENCES[d % 2 :] + SENTENCES[: d % 2]:
            lines += [" ".join(row) for row in sentence] + [""]
    return "\n".join(lines) + "\n"


def run(project, *args, timeout=600):
    result = run_process_tree(
        [sys.executable, "-m", "spacy", "project", "run", *args[:1], str(project), *args[1:]], timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_study_workflow_resumes_and_summarises(tmp_path, byte_level_tokenizer):
    require("ray.tune")
    project = copy_project(tmp_path, ("configs", "scripts", "experiments"))
    data = tmp_path / "conll"
    data.mkdir()
    for name, n in (("train.txt", 4), ("valid.txt", 2), ("test.txt", 3)):
        (data / name).write_text(conll(n))
    tiny = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=4)
    variables = [
        "--vars.base_model",
        tiny,
        "--vars.conll03_dir",
        str(data),
        "--vars.study_unmask",
        "0000,0011,1111",
        "--vars.study_mirrors",
        "",
        "--vars.study_seeds",
        "0",
        "--vars.study_steps",
        "2",
        "--vars.study_batch_words",
        "40",
        "--vars.study_evals_per_epoch",
        "2",
        "--vars.study_baseline_epochs",
        "1",
        "--vars.study_resamples",
        "200",
    ]
    run(project, "prepare-conll03", *variables)
    # Interrupted (resumably) once the first trial has finished.
    first = run(project, "study-run", *variables, "--vars.study_stop_after", "1")
    assert "study interrupted after" in first.stdout, first.stdout[-3000:]
    runs = project / "training" / "study" / "runs"
    # Tune acts on the interruption at its next step: one or two screening trials finished.
    done = sorted(p.parent.name for p in runs.glob("*/trial.json"))
    assert done[0] == "screen-smollm2-0000-s0" and 1 <= len(done) <= 2
    records = {name: (runs / name / "trial.json").read_text() for name in done}
    results = project / "benchmarks" / "results"
    assert not (results / "conll03_study.csv").exists()
    ledger = results / "conll03_study_trials.jsonl"
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert sorted(f"screen-smollm2-{e['run']['unmask']}-s0" for e in entries) == done
    assert {e["status"] for e in entries} == {"finished"}
    # The ledger holds the test counts and nothing of this machine's paths.
    assert all(len(e["record"]["scores"]["test"]["ner"]) == 3 for e in entries)
    assert str(project) not in ledger.read_text()

    again = run(project, "study-run", *variables, "--vars.study_stop_after", "1")
    assert "screen: resuming" in again.stdout
    # The finished trials were not trained again.
    assert {name: (runs / name / "trial.json").read_text() for name in done} == records
    ended = {
        f"{e['phase']}-{e['run']['model']}-{e['run']['unmask']}-s0"
        for e in map(json.loads, ledger.read_text().splitlines())
    }
    assert len(ended) > len(done)
    if sum(name.startswith("screen") for name in ended) == 3:
        # The screen is over and the finalists chosen: its finished runs' rows landed before
        # the final phase trained, whether or not it was interrupted.
        screened = {
            e["run"]["unmask"]
            for e in map(json.loads, ledger.read_text().splitlines())
            if e["phase"] == "screen" and e["status"] == "finished"
        }
        assert {r["unmask"] for r in read_rows(results / "conll03_study.csv")} >= screened

    # A fresh checkout: the ledger and the rungs are there, Tune's state and the trials' pipelines are not.
    shutil.rmtree(project / "training" / "study")
    last = run(project, "study", *variables)
    assert "screen: resuming" not in last.stdout and "already in" in last.stdout
    # What the ledger held was not trained again.
    assert not any((runs / name.replace("smollm2-spacy-cnn", "spacy-cnn")).exists() for name in ended), sorted(ended)
    with (results / "conll03_study.csv").open() as f:
        rows = list(csv.DictReader(f))
    keys = [(r["model"], r["unmask"], r["seed"]) for r in rows]
    summary = json.loads((results / "conll03_study_summary.json").read_text())
    screened = summary["screening"]["trials"]
    # The anchors always finish; 0011 either finishes or is pruned at rung 1 (round 1 of 2).
    assert screened["0000"]["status"] == screened["1111"]["status"] == "finished"
    pruned = screened["0011"]["status"] == "pruned"
    if pruned:
        assert screened["0011"]["eval_rounds"] == 1
    expected = {("smollm2", "0000", "0"), ("smollm2", "1111", "0"), ("spacy-cnn", "spacy-cnn", "0")}
    expected |= set() if pruned else {("smollm2", "0011", "0")}
    assert len(keys) == len(set(keys)) and set(keys) == expected
    for row in rows:
        assert 0 <= float(row["test_ner_f1"]) <= 100 and 0 <= float(row["dev_ner_f1"]) <= 100
        # The CNN baseline has no chunker: no chunking score, rather than 0.
        assert (row["test_chunk_f1"] == "") == (row["model"] == "spacy-cnn")
        assert row["model"] == "spacy-cnn" or 0 <= float(row["test_chunk_f1"]) <= 100
        assert 0 <= float(row["test_tag_acc"]) <= 100 and float(row["train_seconds"]) > 0
        assert row["cpu"] in ("AVX2", "AVX512", "AVX512-BF16", "AMX") and row["test_docs"] == "0"
        # The training loop's last full-dev evaluation of a decoder, which the scheduler read.
        assert row["model"] == "spacy-cnn" or 0 <= float(row["dev_ner_f1_training"]) <= 100
    assert {r["max_steps"] for r in rows if r["model"] == "smollm2"} == {"2"}
    assert {r["eval_rounds"] for r in rows if r["model"] == "smollm2"} == {"2"}

    assert summary["test_full"] is True and summary["tasks"] == ["ner", "chunks", "pos"]
    assert summary["test_docs"] == 3
    for name in ("0000", "1111") + (() if pruned else ("0011",)):
        entry = summary["configs"][name]
        assert entry["seeds"] == 1 and entry["epochs"] > 0 and entry["dev_scored_on"] == "gold tokens"
        lo, hi = entry["test_f1_ci"]
        assert lo <= entry["test_f1_mean"] <= hi or entry["test_f1_mean"] == 0
        assert set(entry["chunks"]) >= {"test_f1_mean", "test_f1_std", "test_f1_ci"}
        assert set(entry["pos"]) >= {"test_acc_mean", "test_acc_std", "test_acc_ci"}
    assert set(summary["configs"]["1111"]) >= {"vs_0000"}
    assert "test_f1_mean" in summary["baselines"]["spacy-cnn"]
    assert summary["screening"]["finalists"][:2] == ["0000", "1111"]
    assert summary["screening"]["rungs"] == [1, 2]
    # One seed per configuration: no claim is judged.
    assert {
        summary["claims"][claim][task]["verdict"]
        for claim in ("unmasking_helps", "layerwise_beats_full", "output_side_matters_most")
        for task in summary["tasks"]
    } == {"cannot tell"}
    assert (results / "conll03_study.png").stat().st_size > 10_000
    # Where the study stands, from the ledger alone.
    status = subprocess.run(
        [sys.executable, "-m", "scripts.study", "status"], cwd=project, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stderr
    lines = [line.split() for line in status.stdout.splitlines() if line.startswith(("screen", "final"))]
    assert {(line[2], line[4]) for line in lines if line[0] == "screen"} >= {("0000", "finished"), ("1111", "finished")}
    assert "rung at round 1:" in status.stdout
