"""The sweep's plan: seed by seed, baselines first; its budgets; a run whose row is in the
CSV (in this schema or the sweep's older one) is not trained again."""

import csv

from experiments import sweep
from experiments.rows import append_row


def test_runs_go_seed_by_seed_with_baselines():
    runs = sweep.plan_runs(["0000", "0011"], [0, 1], ["spacy-cnn"])
    assert [(r["model"], r["unmask"], r["seed"]) for r in runs] == [
        ("spacy-cnn", "spacy-cnn", 0),
        ("smollm2", "0000", 0),
        ("smollm2", "0011", 0),
        ("spacy-cnn", "spacy-cnn", 1),
        ("smollm2", "0000", 1),
        ("smollm2", "0011", 1),
    ]
    assert sweep.plan_runs(["0011"], [0], [], ["bio_tagger"], "a.b=1")[0]["overrides"] == "a.b=1"


def test_transformer_runs_stop_at_one_epoch_and_spacy_evaluates_one_document():
    decoder = sweep.budget_for({"model": "smollm2"}, max_steps=400, batch_words=500, dev_docs=0, test_docs=25)
    cnn = sweep.budget_for({"model": "spacy-cnn"}, max_steps=1500, batch_words=1000, dev_docs=0, test_docs=25)
    assert (decoder.max_epochs, cnn.max_epochs) == (1, None)
    assert decoder.eval_frequency == 400 and decoder.train_dev_docs == 1 and decoder.checkpoint == "model-last"
    longer = sweep.budget_for(
        {"model": "smollm2"}, max_steps=1000, batch_words=500, dev_docs=0, test_docs=0, max_epochs=0
    )
    assert longer.max_epochs == 0


def test_runs_already_in_the_csv_are_skipped(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("train", "dev", "test"):
        (corpus / f"{name}.spacy").touch()
    path = tmp_path / "sweep.csv"
    # One run written by the sweep before the one harness, one since.
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(
            f,
            fieldnames=[
                "model",
                "head",
                "unmask",
                "overrides",
                "seed",
                "max_steps",
                "batch_words",
                "dev_docs",
                "test_docs",
                "dev_f1",
                "test_f1",
                "tag_acc",
                "train_seconds",
            ],
        )
        writer.writeheader()
        writer.writerow(
            {
                "model": "spacy-cnn",
                "head": "parser",
                "unmask": "spacy-cnn",
                "overrides": "",
                "seed": 0,
                "max_steps": 4,
                "batch_words": 40,
                "dev_docs": 0,
                "test_docs": 0,
                "dev_f1": 1,
                "test_f1": 1,
                "tag_acc": 1,
                "train_seconds": 1,
            }
        )
    append_row(
        path,
        {
            "model": "smollm2",
            "config": "default.cfg",
            "unmask": "0011",
            "overrides": "",
            "seed": 0,
            "max_steps": 4,
            "batch_words": 40,
            "dev_docs": 0,
            "test_docs": 0,
            "test_ner_f1": 1,
        },
    )
    runs = sweep.plan_runs(["0011"], [0], ["spacy-cnn"], ["bio_tagger"])
    assert (
        sweep.run_sweep(
            runs,
            corpus=corpus,
            csv=path,
            work=tmp_path / "work",
            max_steps=4,
            batch_words=40,
            dev_docs=0,
            test_docs=0,
            base_model="unused",
        )
        == 0
    )
    assert "2 runs, 2 already in" in capsys.readouterr().out and not (tmp_path / "work").exists()
