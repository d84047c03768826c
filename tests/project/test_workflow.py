"""The `all` workflow end to end, with a tiny decoder and a few steps, so it cannot rot."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import save_tiny_decoder

ROOT = Path(__file__).parents[2]
PACKAGE = "cmllm_ci_check"


@pytest.mark.slow
def test_all_workflow_end_to_end(tmp_path, byte_level_tokenizer):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project)
    for folder in ("configs", "scripts", "assets"):
        shutil.copytree(ROOT / folder, project / folder)
    tiny = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=4)
    command = [
        sys.executable, "-m", "spacy", "project", "run", "all", str(project),
        "--vars.base_model", tiny,
        "--vars.max_steps", "4",
        "--vars.eval_frequency", "2",
        "--vars.package_name", PACKAGE,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        metrics = json.loads((project / "metrics" / "ewt.json").read_text())
        for key in ("tag_acc", "ents_f", "ents_seqeval_f"):
            assert key in metrics, key
        assert f"spacy.load('en_{PACKAGE}')" in result.stdout
        # A second run skips every step whose inputs did not change.
        again = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0
        assert again.stdout.count("Skipping") >= 3, again.stdout[-2000:]
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", f"en_{PACKAGE}"], capture_output=True)
