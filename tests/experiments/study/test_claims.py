"""The three claims' verdicts: the rule, the comparisons the scored configurations allow."""

import pytest

from experiments.study import claims


def diff(ci, per_seed):
    return {"ci": ci, "per_seed": per_seed, "mean": sum(per_seed) / len(per_seed)}


@pytest.mark.parametrize(
    "ci,per_seed,expected",
    [
        ([0.2, 1.5], [0.4, 0.9, 1.1], "held"),
        ([-1.5, -0.2], [-0.4, -0.9, -1.1], "not held"),
        ([-0.3, 1.5], [0.4, 0.9, 1.1], "cannot tell"),  # the interval covers zero
        ([0.2, 1.5], [0.4, -0.1, 1.1], "cannot tell"),  # one seed disagrees
        ([-1.5, -0.2], [-0.4, 0.1, -1.1], "cannot tell"),
        ([0.2, 1.5], [0.4, 0.9], "cannot tell"),  # two seeds are too few
    ],
)
def test_verdict(ci, per_seed, expected):
    assert claims.verdict(diff(ci, per_seed)) == expected


def test_no_shared_seed_cannot_tell():
    assert claims.verdict(None) == "cannot tell"
    assert claims.verdict(diff([0.2, 1.5], [0.4]), min_seeds=1) == "held"


def test_overall():
    assert claims.overall(["held", "held"]) == "held"
    assert claims.overall(["held", "cannot tell"]) == "mixed"
    assert claims.overall([]) == "cannot tell"


@pytest.mark.parametrize(
    "unmask,expected",
    [
        ("0011", True),
        ("0001", True),
        ("0111", True),
        ("1100", False),
        ("1000", False),
        ("0110", False),
        ("1111", False),
        ("0000", False),
        ("1011", True),
        ("001", True),
        ("010", False),
        ("100", False),
    ],
)
def test_output_side(unmask, expected):
    assert claims.output_side(unmask) is expected


def test_comparisons_follow_the_scored_configurations():
    pairs = claims.comparisons(["0000", "0011", "0111", "1100", "1111"])
    assert pairs["unmasking_helps"] == [("0011", "0000"), ("0111", "0000"), ("1100", "0000"), ("1111", "0000")]
    assert pairs["layerwise_beats_full"] == [("0011", "1111"), ("0111", "1111"), ("1100", "1111")]
    assert pairs["output_side_matters_most"] == [("0011", "1100")]
    # Without the references there is nothing to compare.
    assert claims.comparisons(["0011", "0111"]) == {
        "unmasking_helps": [],
        "layerwise_beats_full": [],
        "output_side_matters_most": [],
    }


def test_judge():
    given = {
        ("0011", "0000"): diff([0.5, 2.0], [1.0, 1.5, 0.8]),
        ("1111", "0000"): diff([0.1, 1.9], [1.2, 0.3, 0.9]),
        ("0011", "1111"): diff([-0.6, 0.4], [0.2, -0.3, 0.1]),
    }
    screening = {
        "trials": {
            "0011": {"dev_ner_f1": 92.1, "status": "finished"},
            "1100": {"dev_ner_f1": 84.7, "status": "pruned"},
            "0000": {"dev_ner_f1": 90.6, "status": "finished"},
        }
    }
    out = claims.judge(
        ["0000", "0011", "1111"], lambda run, ref, task: given.get((run, ref)), ["ner"], screening=screening
    )
    assert "3 shared seeds" in out["rule"] and out["min_seeds"] == 3
    helps = out["unmasking_helps"]["ner"]
    assert helps["verdict"] == "held"
    assert [(c["run"], c["verdict"], c["seeds"]) for c in helps["comparisons"]] == [
        ("0011", "held", 3),
        ("1111", "held", 3),
    ]
    assert out["layerwise_beats_full"]["ner"]["verdict"] == "cannot tell"
    assert out["layerwise_beats_full"]["ner"]["comparisons"][0]["ci"] == [-0.6, 0.4]
    output = out["output_side_matters_most"]
    assert output["ner"] == {"verdict": "cannot tell", "comparisons": []} and "why" in output
    # The screen's mirror pair is listed beside it, not judged.
    assert output["screening"] == {
        "0011": {
            "dev_ner_f1": 92.1,
            "status": "finished",
            "mirror": "1100",
            "mirror_dev_ner_f1": 84.7,
            "mirror_status": "pruned",
        }
    }
