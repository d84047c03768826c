"""The study's phases: an interrupted screen is neither pruned nor over; rows land once,
with test scores for finalists only (records from before the one harness included); the
budget's plan."""

import json
from types import SimpleNamespace

from experiments.rows import read_counts, read_rows
from experiments.study import run
from experiments.study.ledger import Ledger


def test_an_interrupted_screen_is_neither_pruned_nor_over(tmp_path, capsys):
    """Ctrl+C returns from Tune's fit with the trial under way neither finished nor stopped
    by the scheduler: it must not enter the ledger as pruned, and no finalist may be chosen."""
    setup = {
        "work": str(tmp_path / "runs"),
        "base_model": "tiny",
        "batch_words": 40,
        "max_steps": 4,
        "eval_frequency": 2,
        "baseline_steps": 8,
    }
    runs = [{"model": "smollm2", "unmask": u, "seed": 0, "phase": "screen"} for u in ("0000", "0110", "0111")]
    finished = tmp_path / "runs" / "screen-smollm2-0000-s0" / "trial.json"
    finished.parent.mkdir(parents=True)
    finished.write_text(json.dumps({"scores": {}}))
    rungs = tmp_path / "rungs.json"
    rungs.write_text(json.dumps({"1": {"screen-smollm2-0110-s0": 0.5}, "stopped": ["screen-smollm2-0110-s0"]}))
    grid = [
        SimpleNamespace(config={"run": r, "setup": setup}, error=None, metrics={"eval_round": 1, "ents_f": 0.5})
        for r in runs
    ]
    ledger = Ledger(tmp_path / "ledger.jsonl", setup)
    ended = run.phase_outcomes("screen", runs, grid, setup, ledger, rungs)
    assert [o["status"] for o in ended] == ["finished", "pruned", "unfinished"]
    assert sorted(e["run"]["unmask"] for e in ledger.entries("screen").values()) == ["0000", "0110"]
    assert run.cut_short("screen", runs, ended)
    assert "interrupted with 1 run(s) unfinished" in capsys.readouterr().err
    # Once the last run ends, the phase is over.
    assert not run.cut_short("screen", runs, ended[:2] + [dict(ended[2], status="pruned")])


SETUP = {"max_steps": 4, "baseline_steps": 8, "batch_words": 40, "eval_frequency": 2, "baseline_patience": 4}
SCORES = {"test": {"ner": [[3, 4, 4], [1, 2, 2]], "chunks": [[2, 2, 2]] * 2, "pos": [[9, 10]] * 2}, "eval_seconds": 1.5}


def ended(model, unmask, seed, status="finished", scores=SCORES):
    """A trial's outcome as the study's ledger held them before the one harness: its record
    without config, budget or words."""
    record = (
        {
            "train_seconds": 60.0,
            "cpu_capability": "AMX",
            "device": "cpu",
            "finished": "2026-12-04T10:00:00",
            "scores": scores,
        }
        if status == "finished"
        else None
    )
    return {
        "run": {"model": model, "unmask": unmask, "seed": seed, "phase": "screen" if seed == 0 else "final"},
        "status": status,
        "metrics": {"ents_f": 0.9, "words": 200, "eval_round": 2},
        "record": record,
    }


def test_rows_land_once_with_test_scores_for_finalists_only(tmp_path):
    """The CSV takes each finished trial once, however often the study stops and resumes: a
    finalist's (and a baseline's) with its test scores and per-document counts, a screened-out
    configuration's with dev scores only, a pruned one not at all."""
    screened = [ended("smollm2", "0000", 0), ended("smollm2", "0110", 0), ended("smollm2", "1100", 0, "pruned")]
    csv_path, counts_path = tmp_path / "study.csv", tmp_path / "counts.jsonl"
    run.write_rows(screened, ["0000", "1111"], SETUP, 100, csv_path, counts_path)
    run.write_rows(
        screened + [ended("smollm2", "0000", 1), ended("spacy-cnn", "spacy-cnn", 0)],
        ["0000", "1111"],
        SETUP,
        100,
        csv_path,
        counts_path,
    )
    rows = read_rows(csv_path)
    assert [(r["unmask"], r["seed"], r["max_steps"], r["config"]) for r in rows] == [
        ("0000", "0", "4", "study.cfg"),
        ("0110", "0", "4", "study.cfg"),
        ("0000", "1", "4", "study.cfg"),
        ("spacy-cnn", "0", "8", "spacy-cnn.cfg"),
    ]
    assert [r["test_ner_f1"] for r in rows] == ["66.67", "", "66.67", "66.67"]  # (3+1) of 6 predicted and gold
    # A decoder's dev score from before the one harness: the training loop's last evaluation.
    assert rows[1]["dev_ner_f1_training"] == "90.0" and rows[1]["dev_ner_f1"] == ""
    assert rows[0]["epochs"] == "2.0" and rows[0]["test_tokens"] == ""
    counts = read_counts(counts_path)
    assert sorted(k[2] + "-" + k[4] for k in counts) == ["0000-0", "0000-1", "spacy-cnn-0"]


def test_a_screened_configuration_named_a_mirror_later_gains_its_test_scores(tmp_path):
    """0001 finished the screen as no finalist (a dev-only row); a later session names it a
    mirror: its screen trial is its seed-0 run, so only the other seeds train, and its row
    takes the test scores in place, once."""
    screened = [ended("smollm2", "0000", 0), ended("smollm2", "0001", 0), ended("smollm2", "1000", 0, "pruned")]
    csv_path, counts_path = tmp_path / "study.csv", tmp_path / "counts.jsonl"
    run.write_rows(screened, ["0000"], SETUP, 100, csv_path, counts_path)
    assert [r["test_ner_f1"] for r in read_rows(csv_path)] == ["66.67", ""]

    finals = run.mirror_runs(["0001", "1000"], [0, 1, 2], screened)
    assert [f"{r['unmask']}-s{r['seed']}" for r in finals] == ["1000-s0", "0001-s1", "1000-s1", "0001-s2", "1000-s2"]
    for _ in range(2):
        run.write_rows(screened, ["0000", "0001", "1000"], SETUP, 100, csv_path, counts_path)
    rows = read_rows(csv_path)
    assert [(r["unmask"], r["test_ner_f1"]) for r in rows] == [("0000", "66.67"), ("0001", "66.67")]
    assert sorted(k[2] for k in read_counts(counts_path)) == ["0000", "0001"]


def test_a_trial_of_the_one_harness_brings_its_gold_dev_scores_and_words(tmp_path):
    scores = {**SCORES, "dev": {"ner": [[1, 2, 2]], "chunks": [[1, 1, 1]], "pos": [[8, 10]]}}
    outcome = ended("smollm2", "0011", 0, scores=scores)
    outcome["record"].update(
        config="study.cfg",
        words=150,
        train_words=100,
        budget={"max_steps": 4, "batch_words": 40, "dev_docs": 0, "test_docs": 0},
    )
    run.write_rows([outcome], ["0000", "1111", "0011"], SETUP, 100, tmp_path / "study.csv", tmp_path / "counts.jsonl")
    (row,) = read_rows(tmp_path / "study.csv")
    assert (row["dev_ner_f1"], row["dev_ner_f1_training"], row["dev_tag_acc"], row["epochs"]) == (
        "50.0",
        "90.0",
        "80.0",
        "1.5",
    )
    (counted,) = read_counts(tmp_path / "counts.jsonl").values()
    assert set(counted) == {"key", "dev", "test"}


def test_the_budget_is_whole_rounds_of_evaluations():
    plan = run.plan_budget(
        train_words=203_621,
        epochs=1.0,
        evals_per_epoch=4,
        grace_epochs=0.5,
        steps=0,
        batch_words=500,
        baseline_epochs=10,
        baseline_steps=0,
    )
    # 408 batches of 500 words in an epoch: 4 rounds of 102 steps, pruning after 2.
    assert plan == {
        "rounds": 4,
        "grace": 2,
        "max_steps": 408,
        "eval_frequency": 102,
        "baseline_steps": 4080,
        "baseline_eval_frequency": 102,
    }
    fixed = run.plan_budget(
        train_words=1000,
        epochs=1.0,
        evals_per_epoch=2,
        grace_epochs=0.5,
        steps=10,
        batch_words=40,
        baseline_epochs=1,
        baseline_steps=0,
    )
    assert (fixed["max_steps"], fixed["eval_frequency"], fixed["baseline_eval_frequency"]) == (10, 5, 5)
    assert run.with_anchors(["0011", "1111"]) == ["0000", "1111", "0011"]
