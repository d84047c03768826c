"""benchmarks/n_process.py and benchmarks/doc_memory.py end to end on a tiny decoder."""
import json

import pytest

from tests.scripts import ROOT, load_script
from tests.tiny import save_tiny_decoder


def load_benchmark(name):
    return load_script(ROOT / "benchmarks" / f"{name}.py", f"{name}_script")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=4)


@pytest.mark.slow
def test_n_process_benchmark_times_each_run_on_the_same_docs(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    result = load_benchmark("n_process").main(["--source", tiny_dir, "--texts", "24", "--batch-size", "8",
                                               "--runs", "one-thread,fork", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "n_process.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert [run["name"] for run in saved["runs"]] == ["1 process, 1 thread", "2 processes, fork"]
    assert all(run["words_per_s"] > 0 and run["words"] == saved["runs"][0]["words"] for run in saved["runs"])
    assert saved["all_same"]
    assert {"cores", "load_average_at_start", "shared_cpu", "cpu_model"} <= set(saved["machine"])
    assert (tmp_path / "n_process.png").stat().st_size > 0


@pytest.mark.slow
def test_doc_memory_benchmark_records_rss_per_stream(tiny_dir, tmp_path):
    result = load_benchmark("doc_memory").main(["--source", tiny_dir, "--docs", "60", "--every", "20",
                                                "--warm-up", "20", "--out", str(tmp_path)])
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
    growth = load_benchmark("doc_memory").growth
    points = [{"docs": 0, "rss_mb": 90.0}, {"docs": 10, "rss_mb": 100.0}, {"docs": 20, "rss_mb": 104.0}]
    assert growth(points, 10, 20) == pytest.approx(0.04)
    assert growth(points, 10, 30) is None
