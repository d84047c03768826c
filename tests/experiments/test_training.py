"""Training a run: spaCy's loop can skip its first (after one update) evaluation, which the
study's logger counts as round 0 without reporting it; the words the loop trained on are
recorded whatever the logger."""

import io

import spacy
from spacy.training import Example
from spacy.training.loop import train as train_loop
from spacy.util import registry

from experiments.study.logger import tune_logger
from experiments.training import first_evaluation_skipped, progress_recorded

WORDS = ["I", "like", "green", "eggs"]
TAGS = ["PRP", "VBP", "JJ", "NNS"]


def tiny_tagger_config(train, dev, logger):
    nlp = spacy.blank("en")
    nlp.add_pipe("tagger")
    config = nlp.config.copy()
    config["corpora"] = {"train": {"@readers": train}, "dev": {"@readers": dev}}
    config["training"].update(
        {"max_steps": 4, "eval_frequency": 2, "patience": 0, "max_epochs": 0, "logger": {"@loggers": logger}}
    )
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
    registry.loggers.register("test-study.logger.v1", func=lambda: tune_logger(console=False, report=sent.append))
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


def test_the_loops_progress_is_recorded_whatever_the_logger():
    examples = [Example.from_dict(spacy.blank("en").make_doc(" ".join(WORDS)), {"tags": TAGS})]
    registry.readers.register("test-progress.corpus.v1", func=lambda: lambda nlp_: iter(examples))
    config = tiny_tagger_config("test-progress.corpus.v1", "test-progress.corpus.v1", "spacy.ConsoleLogger.v1")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    nlp.initialize(lambda: iter(examples))
    with progress_recorded() as progress:
        train_loop(nlp, stdout=io.StringIO(), stderr=io.StringIO())
    # spaCy's loop counts from step 0 and stops after step max_steps = 4: five updates of
    # the one four-word example, an epoch each.
    assert progress == {"step": 4, "epoch": 4, "words": 20}
