"""python -m benchmarks.speed end to end on a tiny decoder: every stage runs and reports what
the README's speed table reads."""

import json

import pytest

from benchmarks import speed


def test_speed_benchmark_reports_every_precision_and_the_cnn(tiny_dir, trained, tmp_path):
    result = speed.main(
        [
            "--source",
            tiny_dir,
            "--words",
            "60",
            "--repeats",
            "1",
            "--train-steps",
            "1",
            "--train-sentences",
            "2",
            "--position-docs",
            "2",
            "--tweets",
            "5",
            "--device",
            "cpu",
            "--trained",
            str(trained[0]),
            "--out",
            str(tmp_path),
        ]
    )
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["ratios"] == result["ratios"] and saved["command"].startswith("python -m benchmarks.speed ")
    scores = saved["int8"]["scores"]
    assert set(scores) == {"pipeline", "float", "int8"} and all(
        scores[mode]["words_per_s"] > 0 for mode in ("float", "int8")
    )
    assert (tmp_path / "speed.png").stat().st_size > 0
    table = saved["precision_table"]
    modes = table["modes"]
    assert "fp32" in modes and "int8" in modes
    for row in modes.values():
        assert row["raw_hf_words_per_s"] > 0 and row["pipeline_words_per_s"] > 0
        assert row["decoder_calls"] >= 1
        assert row["transformer_vs_raw_hf"] == pytest.approx(row["transformer_words_per_s"] / row["raw_hf_words_per_s"])
    assert table["spacy_cnn_words_per_s"] > 0
    assert saved["packing"]["max_abs_difference"] <= 1e-4
    assert saved["packing"]["padding_waste"]["packed"] < saved["packing"]["padding_waste"]["unpacked"]
    tweets = saved["tweets"]
    if "skipped" not in tweets:
        assert tweets["tweets"] == 5
        assert (
            set(tweets["words_per_s"]) == {"smollm2_fp32", "smollm2_int8", "spacy_cnn"}
            or "smollm2_bf16" in tweets["words_per_s"]
        )
