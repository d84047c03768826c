"""Pipelines to measure and what they read: the shipped config built over a base decoder,
variants of one pipeline that share its decoder, the bundled EWT as texts, gold-token Docs,
a tiny random base, and the process's memory; and a pipeline's components by their types
(component_of, transformer_of)."""

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_config, load_model_from_config
from spacy_transformers import Transformer

from spacy_cmllm.corpora import read_conllu
from spacy_cmllm.pipeline.model import get_backbone

from . import ROOT, SOURCE

CONFIG = ROOT / "configs" / "default.cfg"
EWT = [ROOT / "assets" / "ewt" / f"{split}.conllu" for split in ("train", "dev", "test")]
# oneDNN's primitive cache and PyTorch's ideep cache: one entry per input shape of a bf16
# (or int8) CPU kernel, 1,024 entries each by default. Read when a process starts.
SHAPE_CACHE_ENV = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")

ComponentT = TypeVar("ComponentT")


@runtime_checkable
class SerializableComponent(Protocol):
    """A component that pipeline_variant can copy: spaCy's byte serialization, which every
    component of the shipped configs has (trainable or not: attribute_ruler, doc_cleaner)."""

    def to_bytes(self, *, exclude: Iterable[str] = ...) -> bytes: ...

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ...) -> object: ...


def component_of(nlp: Language, name: str, kind: type[ComponentT]) -> ComponentT:
    """nlp's component ``name``, checked to be a ``kind``. Language.get_pipe is typed as
    returning a bare Doc -> Doc callable, which has none of a component's own methods."""
    component = nlp.get_pipe(name)
    if not isinstance(component, kind):
        raise TypeError(f"the pipeline's {name!r} component is a {type(component).__name__}, not a {kind.__name__}")
    return component


def transformer_of(nlp: Language) -> Transformer:
    """nlp's ``transformer`` component: spacy-transformers' Transformer, whose model is the
    package's CausalMaskLLM (the model get_backbone reads)."""
    return component_of(nlp, "transformer", Transformer)


def ewt_sentences(limit: int) -> list[Any]:
    """Up to ``limit`` sentences of the bundled EWT (train, dev, test), in file order."""
    out: list[Any] = []
    for path in EWT:
        for sentence in read_conllu(path):
            out.append(sentence)
            if len(out) >= limit:
                return out
    return out


def ewt_texts(n: int) -> list[str]:
    """``n`` raw sentence texts, the bundled EWT read again from the start where it has
    fewer (about 16,600 sentences)."""
    texts = [s.text or " ".join(s.words) for s in ewt_sentences(n)]
    return [texts[i % len(texts)] for i in range(n)]


def gold_token_docs(vocab: Any, docs: Iterable[Doc]) -> list[Doc]:
    """Fresh Docs of the tokens of ``docs`` (their words and spacing, nothing predicted), so
    that every run predicts, and is scored on, the same tokens."""
    return [Doc(vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]) for doc in docs]


def build_pipeline(source: str, *, model: str | None = None, mixed_precision: bool | None = None) -> Language:
    """A trained pipeline (``model``), or configs/default.cfg over the base ``source``,
    initialized on 200 EWT sentences (untrained heads: the speed and memory of a
    pipeline do not depend on its weights). mixed_precision: the config's setting (None:
    bf16 autocast where the hardware has native bf16)."""
    run = {"components": {"transformer": {"model": {"mixed_precision": mixed_precision}}}}
    if model:
        return spacy.load(model, config=run)
    config = load_config(
        CONFIG,
        overrides={
            "components.transformer.model.name": source,
            "components.transformer.model.mixed_precision": mixed_precision,
        },
        interpolate=True,
    )
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    sentences = ewt_sentences(200)
    examples = [
        Example(Doc(nlp.vocab, words=s.words), Doc(nlp.vocab, words=s.words, tags=s.tags, ents=s.ner))
        for s in sentences
    ]
    nlp.initialize(lambda: examples)
    # Saved and loaded, as users run pipelines: a pipeline fresh from initialize() also holds
    # its training optimizer, whose thinc schedules are generators that cannot be pickled
    # (n_process under spawn pickles the pipeline).
    with tempfile.TemporaryDirectory() as tmp:
        nlp.to_disk(tmp)
        return spacy.load(tmp)


def int8_capable(path: Path) -> Language | None:
    """The trained pipeline at ``path`` where its decoder computes on the CPU, as int8
    prediction needs; else None, after saying so."""
    nlp = spacy.load(path)
    if get_backbone(transformer_of(nlp).model).device.type != "cpu":
        print("int8 prediction is for CPUs; run this without a GPU", file=sys.stderr)
        return None
    return nlp


def pipeline_variant(nlp: Language, **decoder_settings: Any) -> Language:
    """A copy of ``nlp`` whose transformer runs its decoder with other settings (its model's
    attrs: ``pack``, ``int8``, ``int8_smoothing``, ``mixed_precision``, ...), set once as it
    is built. Built from nlp's config around nlp's decoder (shared, not copied, so every
    variant computes with the same weights and memory holds one decoder), with copies of
    nlp's other components. Each measurement then takes the pipeline it needs, and none
    switches a setting of another's."""
    variant = load_model_from_config(nlp.config, vocab=nlp.vocab, auto_fill=True)
    model = transformer_of(variant).model
    unknown = sorted(set(decoder_settings) - set(model.attrs))
    if unknown:
        raise ValueError(f"the transformer's model has no settings {unknown}; it has {sorted(model.attrs)}")
    # The attrs, not the config: every version of the architecture has them, and they are
    # what the model reads at each call.
    model.attrs.update(decoder_settings)
    model.shims[0]._model = get_backbone(transformer_of(nlp).model)
    # With its decoder in place, initializing loads nothing: it sets the model's width, which
    # the listeners read, and checks that the settings fit the decoder.
    model.initialize()
    variant.tokenizer = nlp.tokenizer
    for name, component in nlp.pipeline:
        if name == "transformer":
            continue
        copy = variant.get_pipe(name)
        if not (isinstance(component, SerializableComponent) and isinstance(copy, SerializableComponent)):
            raise TypeError(f"the pipeline's {name!r} component has no to_bytes / from_bytes to copy it by")
        copy.from_bytes(component.to_bytes(exclude=["vocab"]), exclude=["vocab"])
    return variant


def rss_mb() -> float:
    """The process's resident memory now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_conditions(shared_cpu: bool) -> dict[str, Any]:
    """What the provenance record leaves out of a run on a possibly shared CPU, taken when
    the run starts: the load, whether other work shared the CPU, the shape-cache settings."""
    return {
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "shared_cpu": shared_cpu,
        "shape_cache_env": {name: os.environ[name] for name in SHAPE_CACHE_ENV if name in os.environ},
    }


def save_tiny_base(directory: Path, *, tokenizer_source: str = SOURCE, layers: int = 4, hidden: int = 64) -> Path:
    """A randomly initialised Llama of ``layers`` layers and width ``hidden`` with the
    tokenizer of ``tokenizer_source``, saved to ``directory``: a pipeline whose decoder
    costs little, for runs about the Docs rather than the decoder. Built in a child process
    so that loading the tokenizer's model leaves nothing in this one's memory."""
    directory = Path(directory)
    code = (
        "import sys, torch\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "from spacy_cmllm.decoder.load import load_decoder\n"
        "_, tokenizer = load_decoder(sys.argv[1], lm_head=False)\n"
        "torch.manual_seed(0)\n"
        "config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=int(sys.argv[4]), intermediate_size=2 * int(sys.argv[4]),\n"
        "    num_hidden_layers=int(sys.argv[3]), num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,\n"
        "    pad_token_id=tokenizer.pad_token_id)\n"
        "LlamaForCausalLM(config).save_pretrained(sys.argv[2])\n"
        "tokenizer.save_pretrained(sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", code, tokenizer_source, str(directory), str(layers), str(hidden)], check=True)
    return directory
