"""What every stage builds on: the recipe (configs/default.cfg) as it runs on the device, the
corpus (CoNLL-2003 where there is one, else the bundled EWT), where the heads compute, and
the random-weights source of --random-weights."""

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from .. import ROOT
from .shapes import SHAPES, TINY_SHAPES, load_saved_tokenizer, random_decoder_source

# SmolLM2-135M's shape with random weights (--random-weights), registered in each stage's process.
RANDOM_SOURCE = "memory:smollm2_135m"
CONFIG = ROOT / "configs" / "default.cfg"
SPEC = "0011"
CONLL_DIRS = [ROOT.parent / "shared" / "data" / "conll2003" / "iob2", ROOT / "shared" / "data" / "conll2003" / "iob2"]
EWT_DIR = ROOT / "assets" / "ewt"


def find_conll(conll_dir: Path | None) -> Path | None:
    """The CoNLL-2003 directory to use: the given one (which must hold a layout), else the
    first default location holding one, else None (then the bundled EWT is used)."""
    from spacy_cmllm.corpora import CorpusError, conll03_files

    candidates = [conll_dir] if conll_dir is not None else CONLL_DIRS
    for candidate in candidates:
        try:
            conll03_files(candidate)
            return candidate
        except CorpusError:
            if conll_dir is not None:
                raise
    return None


def prepare_corpus(out: Path, conll_dir: Path | None = None) -> dict[str, Any]:
    """train/dev/test .spacy files in `out`: CoNLL-2003 as `prepare-conll03` writes it
    (training Docs of <= 150 words, as the recipe trains), else the bundled EWT as
    `convert-ewt` does. Returns what was prepared."""
    import spacy
    from spacy.tokens import DocBin

    from spacy_cmllm.corpora import conll03_files, read_conll, read_conllu, sentences_to_docs

    vocab = spacy.blank("en").vocab
    found = find_conll(conll_dir)
    if found is not None:
        scheme, files = conll03_files(found)
        docs = {
            split: sentences_to_docs(
                vocab,
                [s for document in read_conll(path, scheme) for s in document],
                max_words=150 if split == "train" else 0,
            )
            for split, path in files.items()
        }
        source = f"CoNLL-2003 ({found})"
    else:
        docs = {
            split: sentences_to_docs(vocab, read_conllu(EWT_DIR / f"{split}.conllu"))
            for split in ("train", "dev", "test")
        }
        source = "EWT (bundled)"
    out.mkdir(parents=True, exist_ok=True)
    for split, split_docs in docs.items():
        DocBin(docs=split_docs).to_disk(out / f"{split}.spacy")
    return {
        "source": source,
        **{f"{split}_docs": len(split_docs) for split, split_docs in docs.items()},
        **{f"{split}_words": sum(len(doc) for doc in split_docs) for split, split_docs in docs.items()},
    }


def stage_examples(args: argparse.Namespace, nlp: Any, split: str, limit_words: int) -> list[Any]:
    """The first `limit_words` words of a split of the stage's corpus (CoNLL-2003, or the
    bundled EWT), as Examples for `nlp`."""
    from spacy.training import Corpus

    corpus = Path(args.work) / "corpus"
    if not (corpus / f"{split}.spacy").exists():
        prepare_corpus(corpus, args.conll_dir)
    examples, words = [], 0
    for eg in Corpus(corpus / f"{split}.spacy")(nlp):
        if words >= limit_words:
            break
        examples.append(eg)
        words += len(eg.reference)
    return examples


def heads_gpu_id(device: str) -> int:
    """0 (heads on cupy, as `spacy train --gpu-id 0`) when the decoder is on CUDA and cupy is
    installed; else -1 (heads on the CPU, decoder on CUDA by itself)."""
    return 0 if device == "cuda" and importlib.util.find_spec("cupy") is not None else -1


def heads_on_device(args: argparse.Namespace) -> int:
    """Put the heads where `spacy train --gpu-id 0` would (cupy, with torch's allocator so
    that torch's memory counters see them too); returns the gpu id (-1: numpy)."""
    from thinc.api import require_gpu, set_gpu_allocator

    gpu_id = heads_gpu_id(args.device)
    if gpu_id >= 0:
        require_gpu(gpu_id)
        set_gpu_allocator("pytorch")
    return gpu_id


def recipe_overrides(args: argparse.Namespace, corpus: Path) -> dict[str, Any]:
    """configs/default.cfg as it should run here: on CUDA the base in bf16 under bf16
    autocast; evaluation inside the loop on one dev doc only (dev is scored afterwards)."""
    cuda = args.device == "cuda"
    return {
        "paths.train": str(corpus / "train.spacy"),
        "paths.dev": str(corpus / "dev-one.spacy"),
        "training.max_steps": args.steps,
        "training.eval_frequency": 10**9,
        "training.logger.progress_bar": False,
        "components.transformer.model.name": args.source,
        "components.transformer.model.device": args.device,
        "components.transformer.model.dtype": "bfloat16" if cuda else "float32",
        "components.transformer.model.mixed_precision": cuda,
    }


def build_initialized(config_path: Path, overrides: dict[str, Any], init_examples: list[Any]) -> Any:
    import spacy
    from spacy.util import load_config

    config = load_config(config_path, overrides=overrides, interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: init_examples)
    return nlp


def register_random_source(args: argparse.Namespace) -> None:
    """With --random-weights, make RANDOM_SOURCE loadable in this process (SmolLM2's shape,
    tiny on a dry run, with the tokenizer of --tokenizer)."""
    if not (args.random_weights and args.source == RANDOM_SOURCE):
        return
    import torch

    shapes = TINY_SHAPES if args.cpu_dry_run else SHAPES
    name = RANDOM_SOURCE.split(":", 1)[1]
    random_decoder_source(name, shapes[name], load_saved_tokenizer(args.tokenizer), torch.device(args.device))
