"""The core at tiny scale: one run of the shipped recipe's config trained and scored, its
record made into a row whose scores are those of the two rules computed directly on the
trained pipeline: seqeval on the gold tokens, and `spacy evaluate`'s from raw text (the
sweep's rule before the one harness)."""

import pytest

from experiments.rows import make_row
from experiments.runs import Budget
from experiments.trial import read_record, train_and_score
from tests.tiny import save_corpus, save_tiny_decoder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, byte_level_tokenizer):
    path = tmp_path_factory.mktemp("trial")
    base = save_tiny_decoder(path / "decoder", byte_level_tokenizer, n_layers=4)
    corpus = path / "corpus"
    corpus.mkdir()
    for split in ("train", "dev", "test"):
        save_corpus(corpus / f"{split}.spacy")
    # A rate at which a dozen steps leave the tiny model half right (NER F1 50 at seed 0),
    # so that the two rules are compared on predictions that are neither all wrong nor all right.
    run = {
        "model": "smollm2",
        "head": "bio_tagger",
        "unmask": "0011",
        "seed": 0,
        "overrides": "components.transformer.model.mixed_precision=false;training.optimizer.learn_rate.initial_rate=0.01",
    }
    budget = Budget(max_steps=12, batch_words=200, eval_frequency=12, max_epochs=0, train_dev_docs=1, test_docs=2)
    record = train_and_score(
        run,
        budget,
        config="default.cfg",
        corpus=corpus,
        out=path / "run",
        base_model=base,
        logger={"training.logger.progress_bar": False},
        text_scores=True,
    )
    return record, path / "run"


def test_the_record_is_written_last_and_read_back(trained):
    record, out = trained
    assert read_record(out) == record
    assert record["words"] > 0 and record["train_words"] > 0 and record["device"] == "cpu"
    assert set(record["scores"]["test"]) == {"ner", "pos"} and len(record["scores"]["test"]["ner"]) == 2


def test_the_row_holds_both_rules_as_computed_directly(trained):
    import spacy
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2
    from spacy.tokens import Doc, DocBin
    from spacy.training import Corpus

    from spacy_cmllm.pipeline.scorer import iob2_tags

    record, out = trained
    row = make_row(record)
    nlp = spacy.load(out / "training" / "model-last")
    gold = list(DocBin().from_disk(out / "test.spacy").get_docs(nlp.vocab))
    predicted = list(nlp.pipe(Doc(nlp.vocab, words=[t.text for t in doc]) for doc in gold))
    seqeval = f1_score(
        [iob2_tags(len(d), d.ents) for d in gold],
        [iob2_tags(len(d), d.ents) for d in predicted],
        mode="strict",
        scheme=IOB2,
        average="micro",
        zero_division=0,
    )
    correct = sum(p.tag_ == g.tag_ for pd, gd in zip(predicted, gold) for p, g in zip(pd, gd))
    assert row["test_ner_f1"] == round(100 * seqeval, 2) > 0
    assert row["test_tag_acc"] == round(100 * correct / sum(len(d) for d in gold), 2) > 0
    # The sweep's rule before the one harness: `nlp.evaluate` of the Corpus from raw text.
    text = nlp.evaluate(Corpus(out / "test.spacy")(nlp))
    assert (row["test_ner_f1_text"], row["test_tag_acc_text"], row["test_ents_f_text"]) == tuple(
        "" if text[k] is None else round(100 * text[k], 2) for k in ("ents_seqeval_f", "tag_acc", "ents_f")
    )
    assert row["test_tokens"] == sum(len(d) for d in gold) and row["epochs"] == round(
        record["words"] / record["train_words"], 3
    )


def test_a_job_reaches_the_child_process_as_it_was_given(monkeypatch):
    from pathlib import Path

    from experiments import trial

    given = []
    monkeypatch.setattr(trial, "train_and_score", lambda run, budget, **kwargs: given.append((run, budget, kwargs)))
    run = {"model": "smollm2", "head": "bio_tagger", "unmask": "0011", "seed": 1, "overrides": ""}
    budget = Budget(max_steps=4, batch_words=40, eval_frequency=4, max_epochs=1, train_dev_docs=1)
    kwargs = {
        "config": "default.cfg",
        "corpus": Path("corpus/conll03"),
        "out": Path("training/sweep/x"),
        "base_model": "tiny",
        "logger": {"training.logger.progress_bar": True},
        "use_gpu": -1,
        "text_scores": True,
    }
    assert trial.main([trial.job(run, budget, **kwargs)]) == 0
    assert given == [(run, budget, kwargs)]
