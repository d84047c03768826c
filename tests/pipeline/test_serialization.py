import shutil
from pathlib import Path

import numpy
import pytest
import spacy

from tests.tiny import build_pipeline, save_tiny_decoder, train

TEXTS = ["John lives in New York and works for Google .", "Mary visited Paris with Acme Corp yesterday ."]


def base_weights_size(model_dir):
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, byte_level_tokenizer):
    # Wide enough that "adapters only" is visibly smaller than the base.
    return save_tiny_decoder(tmp_path_factory.mktemp("base"), byte_level_tokenizer, n_layers=4, hidden_size=128)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, model_dir):
    nlp = build_pipeline(model_dir, unmask="0101", window=8, stride=5)
    train(nlp, steps=10)
    path = tmp_path_factory.mktemp("pipeline") / "nlp"
    nlp.to_disk(path)
    return nlp, path


def predictions(nlp):
    out = []
    for doc in nlp.pipe(TEXTS):
        out.append(
            (
                [t.tag_ for t in doc],
                [(e.start, e.end, e.label_) for e in doc.ents],
                doc._.trf_data.model_output.last_hidden_state.copy(),
            )
        )
    return out


def assert_same(a, b):
    for (tags_a, ents_a, hid_a), (tags_b, ents_b, hid_b) in zip(a, b):
        assert tags_a == tags_b and ents_a == ents_b
        numpy.testing.assert_array_equal(hid_a, hid_b)


def test_round_trip_predicts_exactly_as_before(saved):
    nlp, path = saved
    loaded = spacy.load(path)
    assert_same(predictions(nlp), predictions(loaded))


def test_saved_component_holds_adapters_not_base(saved, model_dir):
    _, path = saved
    saved_size = (path / "transformer" / "model").stat().st_size
    assert saved_size * 5 < base_weights_size(model_dir)
    assert not list(path.rglob("*.safetensors"))


def test_changed_base_is_detected(saved, tmp_path, byte_level_tokenizer):
    nlp, path = saved
    other = save_tiny_decoder(tmp_path / "other", byte_level_tokenizer, n_layers=4, hidden_size=128, seed=7)
    with pytest.raises(ValueError, match="E030"):
        spacy.load(path, config={"components": {"transformer": {"model": {"name": other}}}})


def test_moved_base_found_through_config(saved, tmp_path, model_dir):
    nlp, path = saved
    moved = tmp_path / "moved"
    shutil.copytree(model_dir, moved)
    loaded = spacy.load(path, config={"components": {"transformer": {"model": {"name": str(moved)}}}})
    assert_same(predictions(nlp), predictions(loaded))


def test_missing_base_named_on_load(saved, tmp_path):
    _, path = saved
    with pytest.raises(FileNotFoundError, match="E010.*gone"):
        spacy.load(path, config={"components": {"transformer": {"model": {"name": str(tmp_path / "gone")}}}})


@pytest.mark.parametrize("where", [0.3, 0.6, 0.95])
def test_corrupted_component_file_is_refused(saved, tmp_path, where):
    _, path = saved
    copy = tmp_path / "nlp"
    shutil.copytree(path, copy)
    model_file = copy / "transformer" / "model"
    data = bytearray(model_file.read_bytes())
    i = int(len(data) * where)
    data[i : i + 8] = bytes(b ^ 0xFF for b in data[i : i + 8])
    model_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="E031"):
        spacy.load(copy)


def test_embedded_base_is_self_contained(tmp_path, byte_level_tokenizer):
    base = save_tiny_decoder(tmp_path / "base", byte_level_tokenizer, n_layers=2)
    nlp = build_pipeline(base, unmask="01", embed_base=True)
    train(nlp, steps=3)
    nlp.to_disk(tmp_path / "nlp")
    shutil.rmtree(base)
    loaded = spacy.load(tmp_path / "nlp")
    assert_same(predictions(nlp), predictions(loaded))
