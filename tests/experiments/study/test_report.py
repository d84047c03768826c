"""The study's report: claims judged from per-document counts over seeds, a task a baseline
has no component for left out, the dev score of each configuration and what it was scored on."""

from experiments.rows import make_row, row_key
from experiments.study import report

ROW = {
    "config": "study.cfg",
    "head": "bio_tagger",
    "overrides": "",
    "phase": "final",
    "max_steps": "408",
    "batch_words": "500",
    "dev_docs": "0",
    "test_docs": "0",
    "epochs": "1.0",
    "train_seconds": "3000",
    "cpu": "AMX",
    "device": "cpu",
    "dev_ner_f1": "",
    "dev_ner_f1_training": "90.0",
}


def test_summary_judges_the_claims_from_three_seeds():
    """Per-document counts made so that 0011 and 1111 beat 0000 on every seed and 0011 ties
    1111 but for one seed: the first claim held, the second cannot tell, no mirror for the third."""
    n_docs = 20
    ner = {"0000": [(6, 10, 10)] * 3, "0011": [(9, 10, 10)] * 3, "1111": [(9, 10, 10), (9, 10, 10), (10, 10, 10)]}
    rows, counts = [], {}
    for unmask, per_seed in ner.items():
        for seed, doc in enumerate(per_seed):
            row = {
                **ROW,
                "model": "smollm2",
                "unmask": unmask,
                "seed": str(seed),
                "test_ner_f1": str(100 * 2 * doc[0] / (doc[1] + doc[2])),
            }
            rows.append(row)
            counts[row_key(row)] = {
                "test": {"ner": [list(doc)] * n_docs, "chunks": [[1, 1, 1]] * n_docs, "pos": [[9, 10]] * n_docs}
            }
    summary = report.summarise(rows, counts, n_resamples=100, seed=0)
    helps = summary["claims"]["unmasking_helps"]["ner"]
    assert helps["verdict"] == "held"
    assert [(c["run"], c["mean"], c["ci"], c["verdict"]) for c in helps["comparisons"]] == [
        ("0011", 30.0, [30.0, 30.0], "held"),
        ("1111", 33.33, [33.33, 33.33], "held"),
    ]
    layerwise = summary["claims"]["layerwise_beats_full"]["ner"]
    assert layerwise["verdict"] == "cannot tell" and layerwise["comparisons"][0]["per_seed"] == [0.0, 0.0, -10.0]
    # Chunks and POS are tied everywhere: nothing is held.
    assert summary["claims"]["unmasking_helps"]["chunks"]["verdict"] == "cannot tell"
    assert summary["claims"]["output_side_matters_most"]["ner"]["comparisons"] == []
    # The same numbers as the configurations' own paired differences.
    assert summary["configs"]["0011"]["vs_0000"]["ci"] == helps["comparisons"][0]["ci"]
    assert (summary["configs"]["0011"]["dev_f1_mean"], summary["configs"]["0011"]["dev_scored_on"]) == (
        90.0,
        "training loop",
    )


def test_a_baseline_gets_no_score_for_a_task_it_has_no_component_for():
    """The CNN baseline has no chunker: its chunking counts hold gold spans and nothing
    predicted. Its row and summary leave chunking out instead of reporting an F1 of 0; a
    decoder that predicts no chunk at all keeps its score of 0."""
    rows, counts = [], {}
    for model in ("smollm2", "spacy-cnn"):
        row = {
            **ROW,
            "model": model,
            "unmask": "0000" if model == "smollm2" else model,
            "seed": "0",
            "config": "study.cfg" if model == "smollm2" else "spacy-cnn.cfg",
            "test_ner_f1": "90.0",
        }
        if model == "spacy-cnn":
            row.update(dev_ner_f1="85.0", dev_ner_f1_training="")
        rows.append(row)
        counts[row_key(row)] = {"test": {"ner": [[9, 10, 10]] * 5, "chunks": [[0, 0, 1]] * 5, "pos": [[9, 10]] * 5}}
    summary = report.summarise(rows, counts, n_resamples=50, seed=0)
    assert "chunks" not in summary["baselines"]["spacy-cnn"] and "pos" in summary["baselines"]["spacy-cnn"]
    assert summary["configs"]["0000"]["chunks"]["test_f1_mean"] == 0.0
    assert (summary["baselines"]["spacy-cnn"]["dev_f1_mean"], summary["baselines"]["spacy-cnn"]["dev_scored_on"]) == (
        85.0,
        "gold tokens",
    )
    for model, config, chunk_f1 in (("spacy-cnn", "spacy-cnn.cfg", ""), ("smollm2", "study.cfg", 0.0)):
        record = {
            "run": {"model": model, "unmask": "0000", "seed": 0, "phase": "final"},
            "config": config,
            "budget": {"max_steps": 4, "batch_words": 40, "dev_docs": 0, "test_docs": 0},
            "train_seconds": 1.0,
            "cpu_capability": "AVX2",
            "device": "cpu",
            "finished": "now",
            "scores": {"test": counts[row_key(rows[0])]["test"], "eval_seconds": 1.0},
        }
        row = make_row(record)
        assert row["test_chunk_f1"] == chunk_f1 and row["test_ner_f1"] == 90.0


def test_a_configuration_says_what_its_dev_score_was_scored_on():
    gold, loop = (
        {"dev_ner_f1": "91.0", "dev_ner_f1_training": "90.0"},
        {"dev_ner_f1": "", "dev_ner_f1_training": "93.0"},
    )
    assert report.dev_f1_mean([gold, gold]) == {"dev_f1_mean": 91.0, "dev_scored_on": "gold tokens"}
    # Rows from before the one harness have the training loop's score only: all of them use it.
    assert report.dev_f1_mean([gold, loop]) == {"dev_f1_mean": 91.5, "dev_scored_on": "training loop"}
    assert report.dev_f1_mean([{"dev_ner_f1": "91.0", "dev_ner_f1_training": ""}, loop]) == {
        "dev_f1_mean": 92.0,
        "dev_scored_on": "mixed",
    }
