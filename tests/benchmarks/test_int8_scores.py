"""python -m benchmarks.int8_scores end to end on a briefly trained tiny pipeline."""

import json

import pytest
import spacy

from benchmarks import int8_scores
from tests.tiny import TRAIN_DATA


def test_int8_scores_compares_float_and_int8_on_the_same_docs(trained, tmp_path):
    model, data = trained
    out = tmp_path / "int8.json"
    assert int8_scores.main([str(model), str(data), "--name", "tiny", "--out", str(out), "--smoothing", "0.3"]) == 0
    entry = json.loads(out.read_text())["tiny"]
    modes = entry["modes"]
    assert {"fp32", "int8"} <= set(modes) and entry["default_float"] in modes
    assert {row["words"] for row in modes.values()} == {sum(len(w) for w, _, _ in TRAIN_DATA)}
    default = modes[entry["default_float"]]
    assert entry["ner_f1_change"] == pytest.approx(modes["int8"]["ner_f1"] - default["ner_f1"], abs=0.011)
    assert entry["ner_f1_change_vs_fp32"] == pytest.approx(modes["int8"]["ner_f1"] - modes["fp32"]["ner_f1"], abs=0.011)
    assert (entry["int8_kernel"], entry["int8_weight_levels"]) in (
        ("onednn", 127),
        ("onednn", 63),
        ("int_mm", 127),
        ("int_mm", 63),
    )
    assert entry["int8_smoothing"] == 0.3
    low, high = entry["ner_f1_change_vs_fp32_ci95"]
    assert low <= entry["ner_f1_change_vs_fp32"] <= high
    assert entry["entities"] == sum(tag[0] in "BU" for _, _, biluo in TRAIN_DATA for tag in biluo)
    assert out.with_suffix(".png").stat().st_size > 0
    assert spacy.load(model).get_pipe("transformer").model.attrs["int8"] is False
