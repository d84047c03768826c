"""The `all` workflow end to end, with a tiny decoder and a few steps, so it cannot rot."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import run_process_tree
from tests.tiny import save_tiny_decoder

ROOT = Path(__file__).parents[2]
PACKAGE = "cmllm_ci_check"


def copy_project(tmp_path, folders):
    """A fresh project directory, as a user's checkout would have it."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project)
    for folder in folders:
        shutil.copytree(ROOT / folder, project / folder)
    return project


@pytest.mark.slow
def test_all_workflow_end_to_end(tmp_path, byte_level_tokenizer):
    project = copy_project(tmp_path, ("configs", "scripts", "assets"))
    tiny = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=4)
    command = [
        sys.executable,
        "-m",
        "spacy",
        "project",
        "run",
        "all",
        str(project),
        "--vars.base_model",
        tiny,
        "--vars.max_steps",
        "4",
        "--vars.eval_frequency",
        "2",
        "--vars.package_name",
        PACKAGE,
    ]
    try:
        result = run_process_tree(command, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        metrics = json.loads((project / "metrics" / "ewt.json").read_text())
        for key in ("tag_acc", "ents_f", "ents_seqeval_f"):
            assert key in metrics, key
        assert f"spacy.load('en_{PACKAGE}')" in result.stdout
        # A second run skips every step whose inputs did not change.
        again = run_process_tree(command, timeout=300)
        assert again.returncode == 0
        assert again.stdout.count("Skipping") >= 3, again.stdout[-2000:]
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", f"en_{PACKAGE}"], capture_output=True)


CONLL03 = ROOT.parent / "shared" / "data" / "conll2003" / "iob1_original"


def conll03_slice(tmp_path, docs=4):
    """The first ``docs`` documents of each real CoNLL-2003 file: the real format at a size
    whose evaluation takes seconds, not the minutes a tiny model needs for the full dev and
    test sets."""
    directory = tmp_path / "conll03"
    directory.mkdir()
    for source in sorted(CONLL03.iterdir()):
        kept, seen = [], 0
        with source.open(encoding="utf-8") as lines:
            for line in lines:
                if line.startswith("-DOCSTART-"):
                    seen += 1
                    if seen > docs:
                        break
                kept.append(line)
        (directory / source.name).write_text("".join(kept), encoding="utf-8")
    return directory


@pytest.mark.slow
@pytest.mark.skipif(not CONLL03.exists(), reason="CoNLL-2003 is not bundled; ../shared/data/conll2003 is absent")
def test_conll03_workflow_end_to_end(tmp_path, byte_level_tokenizer):
    project = copy_project(tmp_path, ("configs", "scripts"))
    tiny = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=4)
    command = [
        sys.executable,
        "-m",
        "spacy",
        "project",
        "run",
        "conll03",
        str(project),
        "--vars.base_model",
        tiny,
        "--vars.conll03_dir",
        str(conll03_slice(tmp_path)),
        "--vars.max_steps",
        "3",
        "--vars.eval_frequency",
        "3",
        "--vars.package_name",
        PACKAGE,
    ]
    result = run_process_tree(command, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((project / "metrics" / "conll03.json").read_text())
    assert "ents_seqeval_f" in metrics and "tag_acc" in metrics
    assert (project / "packages" / f"en_{PACKAGE}_conll03-0.1.0").is_dir()
