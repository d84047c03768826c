"""python -m benchmarks.doc_memory end to end on a tiny decoder."""

import json

import pytest

from benchmarks import doc_memory


@pytest.mark.slow
def test_doc_memory_benchmark_records_rss_per_stream(tiny_dir, tmp_path):
    result = doc_memory.main(
        ["--source", tiny_dir, "--docs", "60", "--every", "20", "--warm-up", "20", "--out", str(tmp_path)]
    )
    saved = json.loads((tmp_path / "doc_memory.json").read_text())
    assert saved["meets_target"] == result["meets_target"]
    streams = saved["streams"]
    assert len(streams) == 3
    for row in streams.values():
        assert [p["docs"] for p in row["points"]] == [0, 20, 40, 60]
        assert all(p["rss_mb"] > 0 for p in row["points"])
        assert row["growth_after_warm_up"] is not None
    lean, kept = streams["lean, kept in a DocBin"], streams["states kept (no doc_cleaner), kept in a DocBin"]
    # The decoder's states are what makes kept Docs big.
    assert kept["docbin_bytes"] > 3 * lean["docbin_bytes"]
    assert (tmp_path / "doc_memory.png").stat().st_size > 0


def test_growth_is_read_between_the_two_points():
    growth = doc_memory.growth
    points = [{"docs": 0, "rss_mb": 90.0}, {"docs": 10, "rss_mb": 100.0}, {"docs": 20, "rss_mb": 104.0}]
    assert growth(points, 10, 20) == pytest.approx(0.04)
    assert growth(points, 10, 30) is None
