"""python -m benchmarks.width_rounding end to end on a tiny decoder, where the CPU has native bf16."""

import json

import pytest
import torch

from benchmarks import width_rounding
from spacy_cmllm.pipeline import model
from spacy_cmllm.pipeline.model import use_bf16_autocast


@pytest.mark.skipif(
    not use_bf16_autocast(None, torch.device("cpu")), reason="widths are rounded only under bf16 autocast"
)
def test_width_rounding_times_both_widths_on_the_same_texts(tiny_dir, tmp_path):
    threads = torch.get_num_threads()
    try:
        result = width_rounding.main(["--source", tiny_dir, "--texts", "24", "--passes", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "width_rounding.json").read_text()) == json.loads(json.dumps(result))
    assert all(len(run["words_per_second"]) == 1 and run["distinct_shapes"] >= 1 for run in result["runs"].values())
    assert {"cpu_model", "load_average_at_start", "shared_cpu"} <= set(result["machine"])
    assert model.CPU_BF16_WIDTH_MULTIPLE == width_rounding.ROUNDED  # put back as shipped
    assert (tmp_path / "width_rounding.png").stat().st_size > 0
