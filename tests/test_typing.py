"""The package, experiments/, benchmarks/ and scripts/ (pyproject.toml's files) pass mypy as
pyproject.toml configures it, with thinc's plugin active."""

import textwrap
from pathlib import Path

import pytest

from tests.requirements import require

ROOT = Path(__file__).resolve().parent.parent


def _mypy(monkeypatch: pytest.MonkeyPatch, *args: str):
    api = require("mypy.api")
    # From the repository root, where mypy finds pyproject.toml (and keeps its cache).
    monkeypatch.chdir(ROOT)
    return api.run(list(args))


@pytest.mark.slow
def test_package_passes_mypy(monkeypatch):
    stdout, stderr, status = _mypy(monkeypatch)
    assert status == 0, f"mypy found errors (run: mypy from the repository root):\n{stdout}{stderr}"


@pytest.mark.slow
def test_thinc_plugin_checks_compositions(monkeypatch, tmp_path):
    # A token-vector model chained into a pooling layer: List[Floats2d] out, Ragged in.
    program = textwrap.dedent(
        """
        from typing import List
        from spacy.tokens import Doc
        from thinc.api import Model, chain
        from thinc.types import Floats2d, Ragged

        def build(tok2vec: Model[List[Doc], List[Floats2d]], pooling: Model[Ragged, Floats2d]) -> None:
            chain(tok2vec, pooling)
        """
    )
    path = tmp_path / "wrong_composition.py"
    path.write_text(program, encoding="utf-8")
    stdout, stderr, status = _mypy(monkeypatch, str(path))
    assert status == 1, stdout + stderr
    # The plugin's own error codes: without it mypy would only fail to infer chain's types.
    assert "[layer-mismatch-output]" in stdout, stdout + stderr
