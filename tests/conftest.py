import os

# Tests never reach a model hub: everything they load is built in-process or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Under pytest-xdist (the README's `-n auto --maxprocesses 2`) each worker, and every process
# it starts, computes on one thread: two workers of two torch threads each on two cores
# slow each other down far more than twice.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from tests.tiny import tiny_decoder  # noqa: E402,F401


def pytest_collection_modifyitems(config, items):
    """Files with slow tests run first, each file's tests in their order: with `--dist
    loadfile` a worker then takes a long file while the other works through short ones,
    instead of both waiting at the end on the one worker that drew the end-to-end runs."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture
def make_decoder():
    """Factory for tiny random decoders of every supported family (see tests/tiny.py FAMILIES)."""
    return tiny_decoder


# The in-process tokenizers (byte-level BPE and SentencePiece-style) serve every test package.
from tests.tokenizers import (  # noqa: E402,F401
    byte_level_tokenizer,
    sp_legacy_tokenizer,
    sp_metaspace_tokenizer,
    stripping_tokenizer,
    stripping_tokenizer_with_unk,
    tokenizer,
)
