"""What a run is scored on: the tasks its config has a component for."""

from experiments.scoring import config_tasks, tasks_of, total


def test_the_harness_configs_say_which_tasks_they_score():
    assert tasks_of("study.cfg") == ("ner", "chunks", "pos")
    # No chunker: the CNN baseline is not scored on chunking at all (rather than 0 F1).
    assert tasks_of("spacy-cnn.cfg") == ("ner", "pos")
    assert tasks_of("default.cfg") == tasks_of("minilm.cfg") == ("ner", "pos")


def test_tasks_are_read_from_the_components_not_their_names(tmp_path):
    config = tmp_path / "pipeline.cfg"
    config.write_text(
        '[nlp]\npipeline = ["entities","phrases","other"]\n'
        "[components]\n"
        '[components.entities]\nfactory = "bio_tagger"\n'
        '[components.phrases]\nfactory = "bio_tagger"\nspans_key = "chunks"\n'
        '[components.other]\nfactory = "bio_tagger"\nspans_key = "mentions"\n'
    )
    assert config_tasks(config) == ("ner", "chunks")
    config.write_text('[nlp]\npipeline = ["morph"]\n[components]\n[components.morph]\nfactory = "tagger"\n')
    assert config_tasks(config) == ("pos",)


def test_micro_scores_add_up_over_documents():
    # (tp, predicted, gold): 2 x 4 / (5 + 5) and 18 / 20 correct tags.
    assert total([[3, 4, 4], [1, 1, 1]], "ner") == 0.8 and total([[9, 10], [9, 10]], "pos") == 0.9
    assert total([], "ner") is None
