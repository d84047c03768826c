"""python -m benchmarks.repetition_cost end to end on a tiny decoder."""

import json

import spacy
from spacy.tokens import Doc, DocBin

from benchmarks import repetition_cost
from tests.tiny import TRAIN_DATA


def test_repetition_cost_times_every_setting_against_one_copy(tiny_dir, tmp_path):
    docs = DocBin(docs=[Doc(spacy.blank("en").vocab, words=words) for words, _, _ in TRAIN_DATA * 3])
    docs.to_disk(tmp_path / "docs.spacy")
    out = tmp_path / "cost.json"
    assert (
        repetition_cost.main(
            [
                str(tmp_path / "docs.spacy"),
                "--base",
                tiny_dir,
                "--docs",
                "0",
                "--train-docs",
                "0",
                "--repeats",
                "1,3",
                "--exits",
                "0,2",
                "--window",
                "16",
                "--stride",
                "12",
                "--rounds",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    settings = [(r["repeat"], r["exit_layer"]) for r in result["rows"]]
    assert settings == [(1, 0), (3, 0), (1, 2), (3, 2)]
    assert result["rows"][0]["predict_cost_vs_r1"] == result["rows"][0]["train_cost_vs_r1"] == 1.0
    assert all(r["predict_words_per_s"] > 0 and r["train_words_per_s"] > 0 for r in result["rows"])
    assert result["words"] == sum(len(w) for w, _, _ in TRAIN_DATA * 3)
    assert (tmp_path / "cost.png").stat().st_size > 0
