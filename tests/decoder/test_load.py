"""load_decoder: sources, options, the GGUF cache and every error path."""

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import GPT2TokenizerFast, LlamaForCausalLM, LlamaModel

from spacy_cmllm.decoder import load as load_module
from spacy_cmllm.decoder.load import CACHE_ENV, cache_directory, load_decoder, resolve_source

from .conftest import SMOLLM2_SOURCE, TINY_LAYERS


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty model cache for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(path))
    return path


def _refuse_conversion(*args, **kwargs):
    raise AssertionError("the GGUF file was converted again instead of read from the cache")


@pytest.fixture
def no_conversion(monkeypatch):
    """Fail if a load converts a GGUF file instead of reading the cache."""
    monkeypatch.setattr(load_module, "_convert_gguf", _refuse_conversion)


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "gguf").iterdir() if p.is_dir() and p.name != "index")


# --- local directories -------------------------------------------------------------------


def test_load_directory(tiny_llama_dir):
    model, tokenizer = load_decoder(tiny_llama_dir)
    assert isinstance(model, LlamaForCausalLM)
    assert not model.training
    assert model.dtype == torch.float32
    assert model.config._attn_implementation == "sdpa"
    assert model.config.num_hidden_layers == TINY_LAYERS
    assert tokenizer.pad_token == "</s>" and tokenizer.padding_side == "right"
    assert tokenizer.model_max_length == model.config.max_position_embeddings
    batch = tokenizer(["He rejects it.", "He"], padding=True, return_tensors="pt")
    assert model(**batch).logits.shape[:2] == batch["input_ids"].shape


def test_load_bare_model_as_string_with_options(tiny_llama_dir):
    full, _ = load_decoder(tiny_llama_dir)
    bare, _ = load_decoder(str(tiny_llama_dir), lm_head=False, dtype="bfloat16", attn_implementation="eager")
    assert isinstance(bare, LlamaModel)
    assert not bare.training
    assert bare.dtype == torch.bfloat16
    assert bare.config._attn_implementation == "eager"
    torch.testing.assert_close(bare.embed_tokens.weight, full.model.embed_tokens.weight.to(torch.bfloat16))


# --- GGUF and its cache ---------------------------------------------------------------------


def test_gguf_is_converted_once_then_read_from_cache(tiny_gguf, cache, monkeypatch):
    model, tokenizer = load_decoder(tiny_gguf)
    assert isinstance(model, LlamaForCausalLM) and not model.training
    assert isinstance(tokenizer, GPT2TokenizerFast)
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 2)

    [entry] = _entries(cache)
    sha256 = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert entry.name.startswith(sha256)
    assert (entry / "model" / "model.safetensors").is_file()
    assert not list((cache / "gguf").glob(".tmp-*"))

    monkeypatch.setattr(load_module, "_convert_gguf", _refuse_conversion)
    cached_model, cached_tokenizer = load_decoder(tiny_gguf)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(cached_model.state_dict()[name], tensor, msg=name)
    text = "He rejects it."
    assert cached_tokenizer(text, return_offsets_mapping=True) == tokenizer(text, return_offsets_mapping=True)
    assert cached_tokenizer.padding_side == "right" and cached_tokenizer.pad_token == "</s>"


def test_gguf_bare_model_fresh_and_cached(tiny_gguf, cache):
    fresh, _ = load_decoder(tiny_gguf, lm_head=False)
    cached, _ = load_decoder(tiny_gguf, lm_head=False)
    assert isinstance(fresh, LlamaModel) and isinstance(cached, LlamaModel)
    assert not fresh.training and not cached.training
    torch.testing.assert_close(fresh.embed_tokens.weight, cached.embed_tokens.weight)


def test_cache_is_keyed_by_dtype(tiny_gguf, cache):
    load_decoder(tiny_gguf)
    model, _ = load_decoder(tiny_gguf, dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    assert [e.name.split("-")[-2] for e in _entries(cache)] == ["bfloat16", "float32"]


def test_cache_off(tiny_gguf, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_directory() is None
    model, tokenizer = load_decoder(tiny_gguf, lm_head=False)
    assert isinstance(model, LlamaModel) and tokenizer.eos_token == "</s>"
    assert not list(tmp_path.iterdir())


def test_default_cache_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_directory() == tmp_path / ".cache" / "spacy-cmllm"


def test_failed_cache_write_leaves_nothing_behind(tiny_gguf, cache, monkeypatch):
    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(GPT2TokenizerFast, "save_pretrained", disk_full)
    with pytest.warns(UserWarning, match=r"\[E016\]"):
        model, _ = load_decoder(tiny_gguf)
    assert isinstance(model, LlamaForCausalLM)
    assert _entries(cache) == []
    assert not list((cache / "gguf").glob(".tmp-*"))


def test_interrupted_cache_write_leaves_nothing_behind(tiny_gguf, cache, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(GPT2TokenizerFast, "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_decoder(tiny_gguf)
    assert _entries(cache) == []
    assert not list((cache / "gguf").glob(".tmp-*"))


def test_stale_temporary_directories_are_removed(tiny_gguf, cache):
    stale = cache / "gguf" / ".tmp-killed"
    (stale / "model").mkdir(parents=True)
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    load_decoder(tiny_gguf)
    assert not stale.exists()


def test_unwritable_cache_warns_and_loads(tiny_gguf, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    with pytest.warns(UserWarning, match=r"\[E016\]"):
        model, _ = load_decoder(tiny_gguf)
    assert isinstance(model, LlamaForCausalLM)


def test_unreadable_cache_entry_is_converted_again(tiny_gguf, cache):
    load_decoder(tiny_gguf)
    [entry] = _entries(cache)
    (entry / "model" / "model.safetensors").unlink()
    model, _ = load_decoder(tiny_gguf)
    assert isinstance(model, LlamaForCausalLM)
    assert (entry / "model" / "model.safetensors").is_file()


def test_changed_gguf_file_gets_a_new_entry(tiny_gguf, cache, tmp_path):
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(tiny_gguf.read_bytes())
    load_decoder(copy)
    with copy.open("ab") as file:
        file.write(b"\0" * 32)  # padding after the tensors: still a valid file
    load_decoder(copy)
    assert len(_entries(cache)) == 2


# --- sources ---------------------------------------------------------------------------------


def test_resolve_package_directory():
    email = Path(sys.modules["email"].__file__).parent
    assert resolve_source("package:email/mime") == email / "mime"


def test_resolve_hub_name_passes_through():
    assert resolve_source("some-org/some-model") == "some-org/some-model"


@pytest.mark.parametrize(
    "source",
    ["/no/such/dir", "./no-such-dir", "../no-such-dir", "~/no-such-dir", "model.gguf", "a/b/c"],
)
def test_missing_local_path_is_E010_naming_it(source):
    with pytest.raises(FileNotFoundError, match=r"\[E010\]") as info:
        load_decoder(source)
    assert repr(source) in str(info.value)


def test_missing_path_object_is_E010(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\[E010\]"):
        load_decoder(tmp_path / "missing")


def test_unknown_hub_name_offline_is_E010():
    with pytest.raises(OSError, match=r"\[E010\].*spacy-cmllm-tests/no-such-model"):
        load_decoder("spacy-cmllm-tests/no-such-model")


def test_directory_without_model_is_E010(tmp_path):
    with pytest.raises(OSError, match=r"\[E010\]"):
        load_decoder(tmp_path)


def test_existing_file_that_is_not_gguf_is_E017(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\[E017\]"):
        load_decoder(path)


def test_missing_gguf_package_is_E011(tiny_gguf, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail
    with pytest.raises(ImportError, match=r"\[E011\]"):
        load_decoder(tiny_gguf)


@pytest.mark.parametrize(
    "source, why",
    [
        ("package:spacy_cmllm_no_such_package/model.gguf", "no module named"),
        ("package:email/no-such-file.gguf", "has no file"),
        ("package:email", "expected 'package:"),
        ("package:email/../json/decoder.py", "expected 'package:"),
    ],
)
def test_package_resource_errors_are_E015(source, why):
    with pytest.raises(FileNotFoundError, match=r"\[E015\]") as info:
        load_decoder(source)
    assert why in str(info.value)


# --- options -----------------------------------------------------------------------------------


def test_unknown_dtype_is_E013(tiny_llama_dir):
    with pytest.raises(ValueError, match=r"\[E013\].*'fp8'"):
        load_decoder(tiny_llama_dir, dtype="fp8")


def test_unknown_quantization_is_E014(tiny_llama_dir):
    with pytest.raises(ValueError, match=r"\[E014\].*'8bit'"):
        load_decoder(tiny_llama_dir, quantization="8bit")


def test_4bit_without_cuda_is_E012(tiny_llama_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"\[E012\].*no CUDA GPU"):
        load_decoder(tiny_llama_dir, quantization="4bit")


def test_4bit_without_bitsandbytes_names_it(tiny_llama_dir, monkeypatch):
    find_spec = load_module.importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        load_module.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "bitsandbytes" else find_spec(name, *args),
    )
    with pytest.raises(RuntimeError, match=r"\[E012\]") as info:
        load_decoder(tiny_llama_dir, quantization="4bit")
    assert "'bitsandbytes' package is not installed" in str(info.value)
    assert "no CUDA GPU" not in str(info.value)


# --- the real SmolLM2 ---------------------------------------------------------------------------


@pytest.mark.smollm2
def test_smollm2_is_a_30_layer_llama(smollm2):
    model, _ = smollm2
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.num_hidden_layers == 30
    assert not model.training


@pytest.mark.smollm2
def test_smollm2_greedy_decoding_knows_paris(smollm2):
    model, tokenizer = smollm2
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    assert tokenizer.decode(logits.argmax()) == " Paris"


@pytest.mark.smollm2
def test_smollm2_second_load_reads_the_cache(smollm2, no_conversion):
    if cache_directory() is None:
        pytest.skip(f"{CACHE_ENV}=off")
    model, tokenizer = load_decoder(SMOLLM2_SOURCE, lm_head=False)
    assert isinstance(model, LlamaModel)
    reference, reference_tokenizer = smollm2
    torch.testing.assert_close(model.norm.weight, reference.model.norm.weight)
    text = "He rejects it"
    assert tokenizer(text)["input_ids"] == reference_tokenizer(text)["input_ids"]


# --- models built in this process ----------------------------------------------------------


def test_memory_source_is_built_by_its_registered_function(tiny_llama_dir):
    from spacy_cmllm.decoder.load import register_memory_source
    from spacy_cmllm.errors import CmllmFileNotFoundError

    calls = []

    def build(**options):
        calls.append(options)
        model, tokenizer = load_decoder(tiny_llama_dir, lm_head=options["lm_head"])
        return model.train(), tokenizer

    unregister = register_memory_source("tiny-shape", build)
    try:
        model, tokenizer = load_decoder("memory:tiny-shape", dtype="bfloat16", lm_head=False)
        assert isinstance(model, LlamaModel) and not model.training and tokenizer.pad_token == "</s>"
        assert calls == [{"dtype": "bfloat16", "quantization": None, "attn_implementation": "sdpa", "lm_head": False}]
    finally:
        unregister()
    with pytest.raises(CmllmFileNotFoundError, match=r"E130.*memory:tiny-shape.*registered: none"):
        load_decoder("memory:tiny-shape")
