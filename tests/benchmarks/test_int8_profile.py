"""python -m benchmarks.int8_profile end to end on a briefly trained tiny pipeline."""

import json

import pytest

from benchmarks import int8_profile
from tests.tiny import TRAIN_DATA


def test_int8_profile_splits_each_precision_and_bounds_int8(trained, tmp_path):
    model, data = trained
    out = tmp_path / "profile.json"
    assert int8_profile.main([str(model), str(data), "--name", "tiny", "--docs", "1", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["tiny"]
    modes = entry["modes"]
    assert {"fp32", "int8"} <= set(modes) and entry["docs"] == 1
    assert entry["words"] == len(TRAIN_DATA[0][0])
    int8_ops = {"onednn::qlinear_pointwise", "aten::_int_mm"}
    for mode, row in modes.items():
        assert row["seconds"]["products"] > 0 and row["seconds"]["attention"] > 0
        assert sum(row["seconds"].values()) == pytest.approx(row["profiled_wall_s"], rel=0.02, abs=0.01)
        # The float runs' products are float matmuls, the int8 run's the int8 kernel.
        assert row["product_ops"] and (set(row["product_ops"]) <= int8_ops) == (mode == "int8")
    assert set(entry["ceiling_over"]) == set(modes) - {"int8"}
    for mode, ceiling in entry["ceiling_over"].items():
        assert ceiling >= modes[mode]["profiled_wall_s"] / modes["int8"]["profiled_wall_s"]
    assert out.with_suffix(".png").stat().st_size > 0
