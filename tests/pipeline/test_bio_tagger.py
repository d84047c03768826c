import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

from spacy_cmllm.pipeline.bio_classes import is_valid
from spacy_cmllm.pipeline.bio_tagger import MISSING
from tests.tiny import LISTENER, TRAIN_DATA, save_tiny_decoder

TOK2VEC = {
    "@architectures": "spacy.Tok2Vec.v2",
    "embed": {
        "@architectures": "spacy.MultiHashEmbed.v2",
        "width": 32,
        "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
        "rows": [500, 250, 250, 250],
        "include_static_vectors": False,
    },
    "encode": {
        "@architectures": "spacy.MaxoutWindowEncoder.v2",
        "width": 32,
        "depth": 1,
        "window_size": 1,
        "maxout_pieces": 2,
    },
}

# Chunks of the TRAIN_DATA sentences; "Acme Corp" and "yesterday" are adjacent NPs, so a
# B-NP must follow an I-NP.
CHUNKS = [
    [(0, 1, "NP"), (1, 2, "VP"), (2, 3, "PP"), (3, 5, "NP"), (6, 7, "VP"), (7, 8, "PP"), (8, 9, "NP")],
    [(0, 1, "NP"), (1, 2, "VP"), (2, 3, "NP"), (3, 4, "PP"), (4, 6, "NP"), (6, 7, "NP")],
]

TEXTS = [" ".join(words) for words, _, _ in TRAIN_DATA]


def iob2_from_biluo(biluo):
    return [{"U": "B", "B": "B", "L": "I", "I": "I", "O": "O"}[t[0]] + t[1:] for t in biluo]


def gold_ents():
    return [
        [
            (s.start, s.end, s.label_)
            for s in spacy.training.biluo_tags_to_spans(Doc(spacy.blank("en").vocab, words=w), e)
        ]
        for w, _, e in TRAIN_DATA
    ]


def entity_examples(nlp):
    return [
        Example.from_dict(nlp.make_doc(" ".join(words)), {"words": words, "entities": ents})
        for words, _, ents in TRAIN_DATA
    ]


def chunk_examples(nlp, key="chunks"):
    examples = []
    for (words, _, _), chunks in zip(TRAIN_DATA, CHUNKS):
        eg = Example.from_dict(nlp.make_doc(" ".join(words)), {"words": words})
        eg.reference.spans[key] = [Span(eg.reference, s, e, label=label) for s, e, label in chunks]
        examples.append(eg)
    return examples


def tok2vec_pipeline(**config):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "bio_tagger", config={"model": {"@architectures": "spacy-cmllm.BIOTagger.v1", "tok2vec": TOK2VEC}, **config}
    )
    return nlp


def fit(nlp, examples, steps=30, lr=0.01):
    fix_random_seed(0)
    nlp.initialize(lambda: examples)
    optimizer = Adam(lr)
    return [nlp.update(examples, sgd=optimizer, losses={})["bio_tagger"] for _ in range(steps)]


def predicted_ents(nlp):
    return [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(TEXTS)]


def predicted_spans(nlp, key):
    return [[(s.start, s.end, s.label_) for s in doc.spans[key]] for doc in nlp.pipe(TEXTS)]


# -- spacy train ---------------------------------------------------------------------------


def spacy_train(nlp, tmp_path, examples, **overrides):
    """Run `spacy train` on nlp's config, training and evaluating on the examples."""
    from spacy.cli.train import train

    corpus = tmp_path / "train.spacy"
    DocBin(docs=[eg.reference for eg in examples], store_user_data=True).to_disk(corpus)
    config_path = tmp_path / "config.cfg"
    nlp.config.to_disk(config_path)
    settings = {
        "paths.train": str(corpus),
        "paths.dev": str(corpus),
        "training.max_steps": 40,
        "training.eval_frequency": 20,
        "training.optimizer.learn_rate": 0.01,
        "training.dropout": 0.0,
        "training.seed": 0,
        "training.batcher.size": 2,
    }
    settings.update(overrides)
    train(config_path, tmp_path / "out", use_gpu=-1, overrides=settings)
    return tmp_path / "out" / "model-last"


@pytest.fixture(scope="module")
def trained_tok2vec(tmp_path_factory):
    nlp = tok2vec_pipeline()
    path = spacy_train(nlp, tmp_path_factory.mktemp("tok2vec"), entity_examples(nlp), **{"training.batcher.size": 8})
    return spacy.load(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=2)


@pytest.fixture(scope="module")
def trained_listener(tmp_path_factory, model_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-cmllm.CausalMaskLLM.v1",
                "name": model_dir,
                "unmask": "01",
                "lora": {"r": 4, "alpha": 4.0, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            }
        },
    )
    nlp.add_pipe("bio_tagger", config={"model": {"@architectures": "spacy-cmllm.BIOTagger.v1", "tok2vec": LISTENER}})
    path = spacy_train(
        nlp,
        tmp_path_factory.mktemp("listener"),
        entity_examples(nlp),
        **{"training.max_steps": 60, "training.eval_frequency": 60},
    )
    return path, spacy.load(path)


def test_spacy_train_with_tok2vec_learns_entities(trained_tok2vec):
    assert predicted_ents(trained_tok2vec) == gold_ents()
    assert trained_tok2vec.get_pipe("bio_tagger").labels == ("LOC", "ORG", "PER")


def test_spacy_train_with_decoder_listener_learns_entities(trained_listener):
    _, nlp = trained_listener
    assert predicted_ents(nlp) == gold_ents()
    for doc, (_, _, biluo) in zip(nlp.pipe(TEXTS), TRAIN_DATA):
        assert [t.ent_iob_ + ("-" + t.ent_type_ if t.ent_type_ else "") for t in doc] == iob2_from_biluo(biluo)


def test_trained_pipeline_reports_seqeval_scores(trained_tok2vec):
    scores = trained_tok2vec.evaluate(entity_examples(trained_tok2vec))
    assert scores["ents_seqeval_f"] == 1.0 and scores["ents_f"] == 1.0


def probabilities(nlp):
    docs = list(nlp.pipe(TEXTS))
    return [nlp.get_pipe("bio_tagger").model.predict([doc])[0] for doc in docs]


@pytest.mark.parametrize("which", ["tok2vec", "listener"])
def test_disk_round_trip_predicts_identically(which, trained_tok2vec, trained_listener, tmp_path):
    nlp = trained_tok2vec if which == "tok2vec" else trained_listener[1]
    nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    assert loaded.get_pipe("bio_tagger").labels == nlp.get_pipe("bio_tagger").labels
    assert predicted_ents(loaded) == predicted_ents(nlp)
    for a, b in zip(probabilities(nlp), probabilities(loaded)):
        numpy.testing.assert_array_equal(a, b)


# -- in-process training -------------------------------------------------------------------


def test_replaces_existing_entities_with_overwrite():
    nlp = tok2vec_pipeline(overwrite=True)
    fit(nlp, entity_examples(nlp))
    doc = nlp.make_doc(TEXTS[0])
    doc.ents = [Span(doc, 1, 3, label="JUNK")]
    doc = nlp.get_pipe("bio_tagger")(doc)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == gold_ents()[0]


def test_spans_key_learns_chunks_and_leaves_ents_alone():
    nlp = tok2vec_pipeline(spans_key="chunks")
    losses = fit(nlp, chunk_examples(nlp), steps=40)
    assert losses[-1] < 0.05 * losses[0]
    tagger = nlp.get_pipe("bio_tagger")
    assert tagger.labels == ("NP", "PP", "VP")
    assert predicted_spans(nlp, "chunks") == CHUNKS
    doc = nlp.make_doc(TEXTS[1])
    doc.ents = [Span(doc, 0, 1, label="PER")]
    doc = tagger(doc)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(0, 1, "PER")]
    assert [(s.start, s.end, s.label_) for s in doc.spans["chunks"]] == CHUNKS[1]
    scores = nlp.evaluate(chunk_examples(nlp))
    assert scores["spans_chunks_seqeval_f"] == 1.0 and scores["spans_chunks_f"] == 1.0
    assert scores.get("ents_f") is None


def test_docs_without_the_spans_key_give_no_loss():
    nlp = tok2vec_pipeline(spans_key="chunks")
    examples = chunk_examples(nlp)
    fit(nlp, examples, steps=0)
    tagger = nlp.get_pipe("bio_tagger")
    bare = [Example(eg.predicted, Doc(nlp.vocab, words=[t.text for t in eg.reference])) for eg in examples]
    assert all((tagger.gold_class_ids(eg) == MISSING).all() for eg in bare)
    probs = tagger.model.predict([eg.predicted for eg in bare])
    loss, grads = tagger.get_loss(bare, probs)
    assert loss == 0.0 and all(not g.any() for g in grads)


def test_predictions_are_valid_iob2_where_argmax_is_not():
    nlp = tok2vec_pipeline()
    fit(nlp, entity_examples(nlp), steps=0)
    tagger = nlp.get_pipe("bio_tagger")
    # Random head weights, with I- classes favoured, so that argmax breaks IOB2.
    output = tagger.model.get_ref("output_layer")
    rng = numpy.random.default_rng(0)
    output.set_param("W", rng.normal(size=output.get_param("W").shape).astype("float32"))
    output.set_param("b", numpy.array([0, 0, 3, 0, 3, 0, 3], dtype="float32"))
    docs = [nlp.make_doc(t) for t in TEXTS + ["a b c d e f g h", "Paris Paris Paris"]]
    probs = tagger.model.predict(docs)
    assert not all(is_valid(p.argmax(axis=1).tolist()) for p in probs)
    assert all(is_valid(ids.tolist()) for ids in tagger.predict(docs))


def test_missing_annotation_is_masked():
    nlp = tok2vec_pipeline()
    words = "John lives in New York".split()
    annotated = Example.from_dict(
        nlp.make_doc(" ".join(words)), {"words": words, "entities": ["U-PER", "O", "O", "B-LOC", "L-LOC"]}
    )
    partial = Example.from_dict(
        nlp.make_doc(" ".join(words)), {"words": words, "entities": ["U-PER", "-", "O", "-", "-"]}
    )
    fit(nlp, [annotated], steps=0)
    tagger = nlp.get_pipe("bio_tagger")
    # O=0, B-LOC=1, I-LOC=2, B-PER=3
    assert tagger.gold_class_ids(annotated).tolist() == [3, 0, 0, 1, 2]
    assert tagger.gold_class_ids(partial).tolist() == [3, MISSING, 0, MISSING, MISSING]
    probs = tagger.model.predict([partial.predicted])
    loss, (grad,) = tagger.get_loss([partial], probs)
    assert not grad[[1, 3, 4]].any() and grad[[0, 2]].any()
    # Summed over the two known tokens (as spaCy's tagger does, so that this head's gradient
    # into a shared decoder is not shrunk by the batch size); zero weights give each of the
    # 5 classes 1/5, and each known token's gradient is probs - one-hot.
    assert loss == pytest.approx(2 * numpy.log(5), rel=1e-5)
    expected = numpy.full(5, 0.2, dtype="float32")
    expected[3] -= 1.0
    numpy.testing.assert_allclose(grad[0], expected, rtol=1e-5)


def test_gold_is_projected_through_the_alignment():
    nlp = tok2vec_pipeline()
    vocab = nlp.vocab
    reference = Doc(vocab, words="I like New York a lot".split())
    reference.ents = [Span(reference, 2, 4, label="LOC")]
    merged = Doc(vocab, words=["I", "like", "New York", "a", "lot"], spaces=[True, True, True, True, False])
    straddling = Doc(vocab, words=["I", "like", "New", "York a", "lot"], spaces=[True, True, True, True, False])
    fit(nlp, [Example(Doc(vocab, words=[t.text for t in reference]), reference)], steps=0)
    tagger = nlp.get_pipe("bio_tagger")
    assert tagger.gold_class_ids(Example(merged, reference)).tolist() == [0, 0, 1, 0, 0]
    # "York a" is half inside the entity: neither O nor part of a span that aligns.
    assert tagger.gold_class_ids(Example(straddling, reference)).tolist() == [0, 0, MISSING, MISSING, 0]


def test_overlapping_gold_spans_are_refused():
    nlp = tok2vec_pipeline(spans_key="chunks")
    examples = chunk_examples(nlp)
    reference = examples[0].reference
    reference.spans["chunks"] = list(reference.spans["chunks"]) + [Span(reference, 4, 6, label="X")]
    with pytest.raises(
        ValueError, match=r"E060.*chunks.*John lives in.*'New York' \(NP, tokens 3-5\).*'York and' \(X, tokens 4-6\)"
    ):
        nlp.initialize(lambda: examples)


def test_labels_from_initialize_config():
    nlp = tok2vec_pipeline()
    nlp.config["initialize"]["components"]["bio_tagger"] = {"labels": ["PER", "MISC", "LOC", "ORG"]}
    examples = entity_examples(nlp)
    nlp.initialize(lambda: examples)
    tagger = nlp.get_pipe("bio_tagger")
    assert tagger.labels == tagger.label_data == ("LOC", "MISC", "ORG", "PER")
    assert tagger.model.get_ref("output_layer").get_dim("nO") == 9
    assert tagger.cfg["labels"] == ["LOC", "MISC", "ORG", "PER"]
    with pytest.raises(ValueError, match="E062"):
        tagger.add_label("DATE")


def test_gold_label_outside_the_labels_is_refused():
    nlp = tok2vec_pipeline()
    nlp.config["initialize"]["components"]["bio_tagger"] = {"labels": ["LOC", "PER"]}
    examples = entity_examples(nlp)
    nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match="E061.*'ORG'"):
        nlp.update(examples)


def test_no_labels_is_refused():
    nlp = tok2vec_pipeline(spans_key="nothing_here")
    with pytest.raises(ValueError, match="E064.*nothing_here"):
        nlp.initialize(lambda: entity_examples(nlp))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="E040.*dropout"):
        tok2vec_pipeline(model={"@architectures": "spacy-cmllm.BIOTagger.v1", "tok2vec": TOK2VEC, "dropout": 1.5})
    with pytest.raises(ValueError, match="E040.*spans_key"):
        tok2vec_pipeline(spans_key="")
    nlp = tok2vec_pipeline(model={"@architectures": "spacy-cmllm.BIOTagger.v1", "tok2vec": TOK2VEC, "nO": 5})
    with pytest.raises(ValueError, match="E063.*nO=5.*7"):
        nlp.initialize(lambda: entity_examples(nlp))


def test_head_dropout_is_the_architectures_not_the_training_rate():
    nlp = tok2vec_pipeline()
    fit(nlp, entity_examples(nlp), steps=0)
    model = nlp.get_pipe("bio_tagger").model
    nlp.update(entity_examples(nlp), drop=0.5)
    assert model.get_ref("dropout").attrs["dropout_rate"] == 0.1
    assert any(node.attrs.get("dropout_rate") == 0.5 for node in model.get_ref("tok2vec").walk())


def test_default_config_and_score_weights():
    nlp = spacy.blank("en")
    tagger = nlp.add_pipe("bio_tagger")
    config = nlp.config["components"]["bio_tagger"]
    assert config["model"]["@architectures"] == "spacy-cmllm.BIOTagger.v1"
    assert config["model"]["dropout"] == 0.1
    assert config["spans_key"] is None
    assert config["overwrite"] is False
    assert config["scorer"] == {"@scorers": "spacy-cmllm.bio_scorer.v1"}
    assert nlp.config["training"]["score_weights"]["ents_f"] == 1.0
    assert tagger.labels == ()
