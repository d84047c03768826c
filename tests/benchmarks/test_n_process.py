"""python -m benchmarks.n_process end to end on a tiny decoder."""

import json

import pytest

from benchmarks import n_process


@pytest.mark.slow
def test_n_process_benchmark_times_each_run_on_the_same_docs(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    result = n_process.main(
        [
            "--source",
            tiny_dir,
            "--texts",
            "24",
            "--batch-size",
            "8",
            "--runs",
            "one-thread,fork",
            "--out",
            str(tmp_path),
        ]
    )
    saved = json.loads((tmp_path / "n_process.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert [run["name"] for run in saved["runs"]] == ["1 process, 1 thread", "2 processes, fork"]
    assert all(run["words_per_s"] > 0 and run["words"] == saved["runs"][0]["words"] for run in saved["runs"])
    assert saved["all_same"]
    assert {"cpu_count", "cpu_model", "load_average_at_start", "shared_cpu", "shape_cache_env"} <= set(saved["machine"])
    assert (tmp_path / "n_process.png").stat().st_size > 0
