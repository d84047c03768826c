"""`spacy project run study` end to end on Ray Tune with a tiny decoder and tiny CoNLL data:
interrupted after one trial, resumed by Tune's restore without retraining it, interrupted
again, continued in a fresh checkout from the committed ledger, scored, summarised."""
import shutil
import csv
import json
import subprocess
import sys

import pytest

from tests.processes import run_process_tree
from tests.project.test_workflow import copy_project
from tests.requirements import require
from tests.scripts import ROOT, load_script
from tests.tiny import save_tiny_decoder

SENTENCES = [
    [("John", "NNP", "B-NP", "B-PER"), ("lives", "VBZ", "B-VP", "O"), ("in", "IN", "B-PP", "O"),
     ("Paris", "NNP", "B-NP", "B-LOC"), (".", ".", "O", "O")],
    [("Acme", "NNP", "B-NP", "B-ORG"), ("Corp", "NNP", "I-NP", "I-ORG"), ("hired", "VBD", "B-VP", "O"),
     ("Mary", "NNP", "B-NP", "B-PER"), (".", ".", "O", "O")],
]


def conll(n_docs: int) -> str:
    lines = []
    for d in range(n_docs):
        lines += ["-DOCSTART- -X- -X- O", ""]
        for sentence in SENTENCES[d % 2:] + SENTENCES[: d % 2]:
            lines += [" ".join(row) for row in sentence] + [""]
    return "\n".join(lines) + "\n"


def run(project, *args, timeout=600):
    result = run_process_tree([sys.executable, "-m", "spacy", "project", "run", *args[:1], str(project), *args[1:]],
                              timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_study_workflow_resumes_and_summarises(tmp_path, byte_level_tokenizer):
    require("ray.tune")
    project = copy_project(tmp_path, ("configs", "scripts"))
    data = tmp_path / "conll"
    data.mkdir()
    for name, n in (("train.txt", 4), ("valid.txt", 2), ("test.txt", 3)):
        (data / name).write_text(conll(n))
    tiny = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=4)
    variables = ["--vars.base_model", tiny, "--vars.conll03_dir", str(data),
                 "--vars.study_unmask", "0000,0011,1111", "--vars.study_mirrors", "", "--vars.study_seeds", "0",
                 "--vars.study_steps", "2", "--vars.study_batch_words", "40", "--vars.study_evals_per_epoch", "2",
                 "--vars.study_baseline_epochs", "1", "--vars.study_resamples", "200"]
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
    ended = {f"{e['phase']}-{e['run']['model']}-{e['run']['unmask']}-s0" for e in map(json.loads, ledger.read_text().splitlines())}
    assert len(ended) > len(done)
    if sum(name.startswith("screen") for name in ended) == 3:
        # The screen is over and the finalists chosen: its finished runs' rows landed before
        # the final phase trained, whether or not it was interrupted.
        screened = {e["run"]["unmask"] for e in map(json.loads, ledger.read_text().splitlines())
                    if e["phase"] == "screen" and e["status"] == "finished"}
        assert {r["unmask"] for r in load_study_script().read_rows(results / "conll03_study.csv")} >= screened

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
        assert 0 <= float(row["test_ner_f1"]) <= 100
        # The CNN baseline has no chunker: no chunking score, rather than 0.
        assert (row["test_chunk_f1"] == "") == (row["model"] == "spacy-cnn")
        assert row["model"] == "spacy-cnn" or 0 <= float(row["test_chunk_f1"]) <= 100
        assert 0 <= float(row["tag_acc"]) <= 100 and float(row["train_seconds"]) > 0
        assert row["cpu_capability"] in ("AVX2", "AVX512", "AVX512-BF16", "AMX") and row["test_docs"] == "3"
    assert {r["budget"] for r in rows if r["model"] == "smollm2"} == {"2"}
    assert {r["eval_rounds"] for r in rows if r["model"] == "smollm2"} == {"2"}

    assert summary["test_full"] is True and summary["tasks"] == ["ner", "chunks", "pos"]
    assert summary["test_docs"] == 3
    for name in ("0000", "1111") + (() if pruned else ("0011",)):
        entry = summary["configs"][name]
        assert entry["seeds"] == 1 and entry["epochs"] > 0
        lo, hi = entry["test_f1_ci"]
        assert lo <= entry["test_f1_mean"] <= hi or entry["test_f1_mean"] == 0
        assert set(entry["chunks"]) >= {"test_f1_mean", "test_f1_std", "test_f1_ci"}
        assert set(entry["pos"]) >= {"test_acc_mean", "test_acc_std", "test_acc_ci"}
    assert set(summary["configs"]["1111"]) >= {"vs_0000"}
    assert "test_f1_mean" in summary["baselines"]["spacy-cnn"]
    assert summary["screening"]["finalists"][:2] == ["0000", "1111"]
    assert summary["screening"]["rungs"] == [1, 2]
    # One seed per configuration: no claim is judged.
    assert {summary["claims"][claim][task]["verdict"] for claim in
            ("unmasking_helps", "layerwise_beats_full", "output_side_matters_most") for task in summary["tasks"]} == {"cannot tell"}
    assert (results / "conll03_study.png").stat().st_size > 10_000
    # Where the study stands, from the ledger alone.
    status = subprocess.run([sys.executable, "scripts/study.py", "status"], cwd=project, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    lines = [line.split() for line in status.stdout.splitlines() if line.startswith(("screen", "final"))]
    assert {(line[2], line[4]) for line in lines if line[0] == "screen"} >= {("0000", "finished"), ("1111", "finished")}
    assert "rung at round 1:" in status.stdout


def load_study_script():
    return load_script(ROOT / "scripts" / "study.py", "study_script")


def test_an_interrupted_screen_is_neither_pruned_nor_over(tmp_path, capsys):
    """Ctrl+C returns from Tune's fit with the trial under way neither finished nor stopped
    by the scheduler: it must not enter the ledger as pruned, and no finalist may be chosen."""
    from types import SimpleNamespace

    study = load_study_script()
    setup = {"work": str(tmp_path / "runs"), "base_model": "tiny", "batch_words": 40, "max_steps": 4,
             "eval_frequency": 2, "baseline_steps": 8}
    runs = [{"model": "smollm2", "unmask": u, "seed": 0, "phase": "screen"} for u in ("0000", "0110", "0111")]
    finished = tmp_path / "runs" / "screen-smollm2-0000-s0" / "trial.json"
    finished.parent.mkdir(parents=True)
    finished.write_text(json.dumps({"scores": {}}))
    rungs = tmp_path / "rungs.json"
    rungs.write_text(json.dumps({"1": {"screen-smollm2-0110-s0": 0.5}, "stopped": ["screen-smollm2-0110-s0"]}))
    grid = [SimpleNamespace(config={"run": r, "setup": setup}, error=None, metrics={"eval_round": 1, "ents_f": 0.5})
            for r in runs]
    ledger = study.Ledger(tmp_path / "ledger.jsonl", setup)
    ended = study.phase_outcomes("screen", runs, grid, setup, ledger, rungs)
    assert [o["status"] for o in ended] == ["finished", "pruned", "unfinished"]
    assert sorted(e["run"]["unmask"] for e in ledger.entries("screen").values()) == ["0000", "0110"]
    assert study.cut_short("screen", runs, ended)
    assert "interrupted with 1 run(s) unfinished" in capsys.readouterr().err
    # Once the last run ends, the phase is over.
    assert not study.cut_short("screen", runs, ended[:2] + [dict(ended[2], status="pruned")])


def test_summary_judges_the_claims_from_three_seeds():
    """Per-document counts made so that 0011 and 1111 beat 0000 on every seed and 0011 ties
    1111 but for one seed: the first claim held, the second cannot tell, no mirror for the third."""
    study = load_study_script()
    n_docs = 20
    ner = {"0000": [(6, 10, 10)] * 3, "0011": [(9, 10, 10)] * 3, "1111": [(9, 10, 10), (9, 10, 10), (10, 10, 10)]}
    rows, counts = [], {}
    for unmask, per_seed in ner.items():
        for seed, doc in enumerate(per_seed):
            row = {"model": "smollm2", "unmask": unmask, "seed": seed, "budget": 408, "batch_words": 500,
                   "epochs": 1.0, "train_seconds": 3000, "cpu_capability": "AMX", "device": "cpu",
                   "dev_ner_f1": 90.0, "test_ner_f1": 100 * 2 * doc[0] / (doc[1] + doc[2])}
            rows.append({k: str(v) for k, v in row.items()})
            counts[study.row_key(row)] = {"test": {"ner": [list(doc)] * n_docs, "chunks": [[1, 1, 1]] * n_docs,
                                                   "pos": [[9, 10]] * n_docs}}
    summary = study.summarise(rows, counts, n_resamples=100, seed=0)
    helps = summary["claims"]["unmasking_helps"]["ner"]
    assert helps["verdict"] == "held"
    assert [(c["run"], c["mean"], c["ci"], c["verdict"]) for c in helps["comparisons"]] == [
        ("0011", 30.0, [30.0, 30.0], "held"), ("1111", 33.33, [33.33, 33.33], "held")]
    layerwise = summary["claims"]["layerwise_beats_full"]["ner"]
    assert layerwise["verdict"] == "cannot tell" and layerwise["comparisons"][0]["per_seed"] == [0.0, 0.0, -10.0]
    # Chunks and POS are tied everywhere: nothing is held.
    assert summary["claims"]["unmasking_helps"]["chunks"]["verdict"] == "cannot tell"
    assert summary["claims"]["output_side_matters_most"]["ner"]["comparisons"] == []
    # The same numbers as the configurations' own paired differences.
    assert summary["configs"]["0011"]["vs_0000"]["ci"] == helps["comparisons"][0]["ci"]


def test_rows_land_once_with_test_scores_for_finalists_only(tmp_path):
    """The CSV takes each finished trial once, however often the study stops and resumes: a
    finalist's (and a baseline's) with its test scores and per-document counts, a screened-out
    configuration's with dev scores only, a pruned one not at all."""
    study = load_study_script()
    setup = {"max_steps": 4, "baseline_steps": 8, "batch_words": 40}
    scores = {"test": {"ner": [[3, 4, 4], [1, 2, 2]], "chunks": [[2, 2, 2]] * 2, "pos": [[9, 10]] * 2},
              "eval_seconds": 1.5}

    def ended(model, unmask, seed, status="finished"):
        record = {"train_seconds": 60.0, "cpu_capability": "AMX", "device": "cpu", "finished": "2026-12-04T10:00:00",
                  "scores": scores} if status == "finished" else None
        return {"run": {"model": model, "unmask": unmask, "seed": seed, "phase": "screen" if seed == 0 else "final"},
                "status": status, "metrics": {"ents_f": 0.9, "words": 200, "eval_round": 2}, "record": record}

    screened = [ended("smollm2", "0000", 0), ended("smollm2", "0110", 0), ended("smollm2", "1100", 0, "pruned")]
    csv_path, counts_path = tmp_path / "study.csv", tmp_path / "counts.jsonl"
    study.write_rows(screened, ["0000", "1111"], setup, 100, csv_path, counts_path)
    study.write_rows(screened + [ended("smollm2", "0000", 1), ended("spacy-cnn", "spacy-cnn", 0)], ["0000", "1111"],
                     setup, 100, csv_path, counts_path)
    rows = study.read_rows(csv_path)
    assert [(r["unmask"], r["seed"], r["budget"]) for r in rows] == [
        ("0000", "0", "4"), ("0110", "0", "4"), ("0000", "1", "4"), ("spacy-cnn", "0", "8")]
    assert [r["test_ner_f1"] for r in rows] == ["66.67", "", "66.67", "66.67"]  # (3+1) of 6 predicted and gold
    assert rows[1]["dev_ner_f1"] == "90.0" and rows[0]["epochs"] == "2.0" and rows[0]["test_docs"] == "2"
    counts = study.read_counts(counts_path)
    assert sorted(k[1:3] for k in counts) == [("0000", "0"), ("0000", "1"), ("spacy-cnn", "0")]


def test_a_baseline_gets_no_score_for_a_task_it_has_no_component_for():
    """The CNN baseline has no chunker: its chunking counts hold gold spans and nothing
    predicted. Its row and summary leave chunking out instead of reporting an F1 of 0; a
    decoder that predicts no chunk at all keeps its score of 0."""
    study = load_study_script()
    rows, counts = [], {}
    for model in ("smollm2", "spacy-cnn"):
        row = {"model": model, "unmask": "0000" if model == "smollm2" else model, "seed": 0, "budget": 408,
               "batch_words": 500, "epochs": 1.0, "train_seconds": 3000, "cpu_capability": "AVX2", "device": "cpu",
               "dev_ner_f1": 90.0, "test_ner_f1": 90.0}
        rows.append({k: str(v) for k, v in row.items()})
        counts[study.row_key(row)] = {"test": {"ner": [[9, 10, 10]] * 5, "chunks": [[0, 0, 1]] * 5, "pos": [[9, 10]] * 5}}
    summary = study.summarise(rows, counts, n_resamples=50, seed=0)
    assert "chunks" not in summary["baselines"]["spacy-cnn"] and "pos" in summary["baselines"]["spacy-cnn"]
    assert summary["configs"]["0000"]["chunks"]["test_f1_mean"] == 0.0
    setup = {"max_steps": 4, "baseline_steps": 8, "batch_words": 40}
    for model, chunk_f1 in (("spacy-cnn", None), ("smollm2", 0.0)):
        outcome = {"run": {"model": model, "unmask": "0000", "seed": 0, "phase": "final"}, "status": "finished",
                   "metrics": {"words": 100}, "record": {"train_seconds": 1.0, "cpu_capability": "AVX2", "device": "cpu",
                                                         "finished": "now"}}
        row = study.make_row(outcome, setup, 100, {"test": counts[study.row_key(rows[0])]["test"], "eval_seconds": 1.0})
        assert (row["test_chunk_f1"] if row["test_chunk_f1"] != "" else None) == chunk_f1 and row["test_ner_f1"] == 90.0


def test_mirrors_restore_leading_zeros_and_refuse_a_bad_spec():
    study = load_script(ROOT / "scripts" / "study.py", "study_script")
    assert study.parse_mirrors("1100, 11") == ["1100", "0011"]
    assert study.parse_mirrors("") == []
    with pytest.raises(SystemExit):
        study.parse_mirrors("1102")
