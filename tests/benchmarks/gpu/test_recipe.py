"""What the GPU check's stages share: the corpus they prepare and the recipe's overrides."""

import importlib.util

import pytest
import spacy
from spacy.tokens import DocBin

from benchmarks import SOURCE, gpu_check
from benchmarks.gpu import recipe
from spacy_cmllm.corpora import CorpusError


def test_prepares_conll_as_the_recipe_trains(tmp_path, conll_dir):
    info = recipe.prepare_corpus(tmp_path / "corpus", conll_dir)
    assert info["source"] == f"CoNLL-2003 ({conll_dir})"
    assert info["train_docs"] == 6 and info["dev_docs"] == 6 and info["dev_words"] == 48
    docs = list(DocBin().from_disk(tmp_path / "corpus" / "train.spacy").get_docs(spacy.blank("en").vocab))
    assert len(docs) == 6 and all(len(doc) <= 150 and doc.ents for doc in docs)
    # A directory given explicitly must hold CoNLL-2003: no silent fallback.
    with pytest.raises(CorpusError):
        recipe.prepare_corpus(tmp_path / "other", tmp_path)


def test_falls_back_to_the_bundled_ewt(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "CONLL_DIRS", [tmp_path / "nowhere"])
    info = recipe.prepare_corpus(tmp_path / "corpus")
    assert info["source"] == "EWT (bundled)" and info["train_words"] > 30000
    assert all((tmp_path / "corpus" / f"{split}.spacy").exists() for split in ("train", "dev", "test"))


def test_recipe_overrides_fit_the_default_config(tmp_path, monkeypatch):
    args = gpu_check.parse_args(["--steps", "100"])
    args.source = SOURCE
    overrides = recipe.recipe_overrides(args, tmp_path)
    config = spacy.util.load_config(recipe.CONFIG, overrides=overrides, interpolate=True)
    model = config["components"]["transformer"]["model"]
    assert (model["device"], model["dtype"], model["mixed_precision"]) == ("cuda", "bfloat16", True)
    assert config["training"]["max_steps"] == 100 and model["adapter_optimizer"]["total_steps"] == 100
    assert config["components"]["ner"]["factory"] == "bio_tagger"
    assert recipe.heads_gpu_id("cpu") == -1
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "cupy" else None)
    assert recipe.heads_gpu_id("cuda") == 0
