import os

# Tests never reach a model hub: everything they load is built in-process or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from tests.tiny import tiny_decoder  # noqa: E402,F401


@pytest.fixture
def make_decoder():
    """Factory for tiny random decoders of every supported family (see tests/tiny.py FAMILIES)."""
    return tiny_decoder

# The in-process tokenizers (byte-level BPE and SentencePiece-style) serve every test package.
from tests.pipeline.conftest import byte_level_tokenizer, sp_legacy_tokenizer  # noqa: E402,F401
