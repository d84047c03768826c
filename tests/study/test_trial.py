"""A study trial: which tasks its config is scored on; in training, spaCy's loop skips its
first (after one update) evaluation, and the logger counts it as round 0 without reporting it."""
import io

import spacy
from spacy.training import Example
from spacy.training.loop import train as train_loop
from spacy.util import registry

from spacy_cmllm.study.logger import tune_logger
from spacy_cmllm.study.trial import config_tasks, first_evaluation_skipped, tasks_of

WORDS = ["I", "like", "green", "eggs"]
TAGS = ["PRP", "VBP", "JJ", "NNS"]


def tiny_tagger_config(train, dev, logger):
    nlp = spacy.blank("en")
    nlp.add_pipe("tagger")
    config = nlp.config.copy()
    config["corpora"] = {"train": {"@readers": train}, "dev": {"@readers": dev}}
    config["training"].update({"max_steps": 4, "eval_frequency": 2, "patience": 0, "max_epochs": 0,
                               "logger": {"@loggers": logger}})
    return config


def test_the_first_evaluation_is_skipped_and_not_reported():
    examples = [Example.from_dict(spacy.blank("en").make_doc(" ".join(WORDS)), {"tags": TAGS})]
    dev_calls = []

    def corpus(nlp_):
        return iter(examples)

    def dev_corpus(nlp_):
        dev_calls.append(1)
        return iter(examples)

    registry.readers.register("test-study.train.v1", func=lambda: corpus)
    registry.readers.register("test-study.dev.v1", func=lambda: dev_corpus)
    sent = []
    registry.loggers.register("test-study.logger.v1",
                              func=lambda: tune_logger(console=False, report=sent.append))
    config = tiny_tagger_config("test-study.train.v1", "test-study.dev.v1", "test-study.logger.v1")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    nlp.initialize(lambda: iter(examples))
    with first_evaluation_skipped():
        train_loop(nlp, stdout=io.StringIO(), stderr=io.StringIO())
    # spaCy evaluates at steps 0, 2 and 4; the dev set is read for the last two only.
    assert len(dev_calls) == 2
    assert [(r["step"], r["eval_round"]) for r in sent] == [(2, 1), (4, 2)]
    assert all("tag_acc" in r for r in sent)
    # Outside the block spaCy's loop is itself again.
    dev_calls.clear()
    train_loop(nlp, stdout=io.StringIO(), stderr=io.StringIO())
    assert len(dev_calls) == 3


def test_the_study_configs_say_which_tasks_they_score():
    assert tasks_of("smollm2") == ("ner", "chunks", "pos")
    # No chunker: the CNN baseline is not scored on chunking at all (rather than 0 F1).
    assert tasks_of("spacy-cnn") == ("ner", "pos")


def test_tasks_are_read_from_the_components_not_their_names(tmp_path):
    config = tmp_path / "pipeline.cfg"
    config.write_text(
        "[nlp]\npipeline = [\"entities\",\"phrases\",\"other\"]\n"
        "[components]\n"
        "[components.entities]\nfactory = \"bio_tagger\"\n"
        "[components.phrases]\nfactory = \"bio_tagger\"\nspans_key = \"chunks\"\n"
        "[components.other]\nfactory = \"bio_tagger\"\nspans_key = \"mentions\"\n"
    )
    assert config_tasks(config) == ("ner", "chunks")
    config.write_text("[nlp]\npipeline = [\"morph\"]\n[components]\n[components.morph]\nfactory = \"tagger\"\n")
    assert config_tasks(config) == ("pos",)
