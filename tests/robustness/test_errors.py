"""Each user-facing error at the pipeline level says what went wrong and how to fix it."""

import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from tests.tiny import build_pipeline, train


def test_unsupported_architecture_at_initialize(tmp_path, byte_level_tokenizer):
    path = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(byte_level_tokenizer))).save_pretrained(
        path
    )
    byte_level_tokenizer.save_pretrained(path)
    nlp = build_pipeline(path, unmask="01")
    with pytest.raises(ValueError, match="E002.*GPT2.*Llama"):
        train(nlp, steps=0)


def test_quantization_without_cuda(tmp_path, byte_level_tokenizer):
    from tests.tiny import save_tiny_decoder

    nlp = build_pipeline(
        save_tiny_decoder(tmp_path / "t", byte_level_tokenizer, n_layers=2), unmask="01", quantization="4bit"
    )
    with pytest.raises((ValueError, RuntimeError, ImportError), match="E012"):
        train(nlp, steps=0)


def test_every_coded_error_is_raised_as_a_coded_error_type():
    """The CLI and the loader recognise spacy-cmllm's errors by type (CodedError), so no
    coded message may be raised through a bare built-in exception type."""
    import re
    from pathlib import Path

    import spacy_cmllm

    bare = re.compile(
        r"\b(ValueError|FileNotFoundError|OSError|ImportError|RuntimeError|TypeError|KeyError)\(\s*Errors\."
    )
    found = [
        f"{path.name}: {match.group(0)}"
        for path in Path(spacy_cmllm.__file__).parent.rglob("*.py")
        for match in bare.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not found
