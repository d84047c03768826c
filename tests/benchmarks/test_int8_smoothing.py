"""python -m benchmarks.int8_smoothing end to end on a briefly trained tiny pipeline."""

import json

from benchmarks import int8_smoothing


def test_int8_smoothing_measures_each_alpha_against_float32(trained, tmp_path):
    model, data = trained
    out = tmp_path / "smoothing.json"
    assert int8_smoothing.main([str(model), str(data), "--alphas", "0,0.5", "--name", "tiny", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["tiny"]
    assert set(entry["alphas"]) == {"0.0", "0.5"}
    for row in entry["alphas"].values():
        assert 0 < row["vector_relative_error"] < 0.5
        assert 0 <= row["ner_label_changed"] <= 1 and 0 <= row["tag_changed"] <= 1
    # Smoothing changes the int8 copy, so the two alphas cannot stray from float32 alike.
    assert entry["alphas"]["0.0"]["vector_relative_error"] != entry["alphas"]["0.5"]["vector_relative_error"]
    assert entry["best_alpha_by_vector_error"] in entry["alphas"]
    assert out.with_suffix(".png").stat().st_size > 0
