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


# --- the config must match what the adapters were trained with ---------------------------


def load_with(path, **model_config):
    return spacy.load(path, config={"components": {"transformer": {"model": model_config}}})


def test_saved_component_holds_only_what_load_compares(saved):
    from spacy_cmllm.pipeline.model import get_backbone

    nlp, _ = saved
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    assert backbone.settings.trained_shape() == {
        "unmask": "0101",
        "lora": {"r": 4, "alpha": 4.0, "target_modules": ["q_proj", "v_proj"]},
    }


@pytest.mark.parametrize("unmask", ["1111", "0011", [1]])
def test_changed_unmask_refused_naming_both(saved, unmask):
    _, path = saved
    with pytest.raises(ValueError, match=r"E033.*'0101' \(layers \[1, 3\]\).*" + repr(unmask).replace("[", r"\[")):
        load_with(path, unmask=unmask)


def test_equivalent_unmask_spec_loads(saved):
    nlp, path = saved
    assert_same(predictions(nlp), predictions(load_with(path, unmask=[3, 1])))


@pytest.mark.parametrize(
    "lora,fragment",
    [
        ({"r": 8, "alpha": 4.0, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}, "different r"),
        ({"r": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}, "different alpha"),
        (
            {"r": 4, "alpha": 4.0, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj"]},
            "different target_modules",
        ),
        (None, "cannot be added to or dropped"),
    ],
)
def test_changed_lora_shape_refused_naming_both(saved, lora, fragment):
    _, path = saved
    with pytest.raises(ValueError, match=r"E034.*'r': 4, 'alpha': 4\.0.*" + fragment):
        load_with(path, lora=lora)


def test_allowed_changes_load(saved):
    # LoRA dropout, target order, device, precision and checkpointing do not change what
    # the adapters mean.
    nlp, path = saved
    loaded = load_with(
        path,
        lora={"r": 4, "alpha": 4, "dropout": 0.1, "target_modules": ["v_proj", "q_proj"]},
        device="cpu",
        mixed_precision=False,
        gradient_checkpointing=True,
    )
    assert_same(predictions(nlp), predictions(loaded))


def test_changed_hidden_layers_refused_naming_both(saved):
    _, path = saved
    with pytest.raises(ValueError, match=r"E035.*hidden_layers=\[-1\].*hidden_layers=\[-2\]"):
        load_with(path, hidden_layers=[-2])


def test_equivalent_hidden_layers_load(saved):
    nlp, path = saved
    assert_same(predictions(nlp), predictions(load_with(path, hidden_layers=[4])))  # 4 layers: -1 == 4


# --- the attention pattern is measured at initialize and at load --------------------------


@pytest.fixture
def layer_3_stays_causal(monkeypatch):
    """Unmasking that silently skips layer 3 (as an unsteerable kernel would)."""
    from spacy_cmllm.decoder import backbone
    from spacy_cmllm.decoder.unmask import parse_spec, unmask_layers

    def broken(model, spec):
        chosen = [i for i in parse_spec(spec, 4) if i != 3]
        handle = unmask_layers(model, chosen)
        handle.layers = parse_spec(spec, 4)  # and claims success
        return handle

    monkeypatch.setattr(backbone, "unmask_layers", broken)


def test_load_measures_the_attention_pattern(saved, layer_3_stays_causal):
    _, path = saved
    with pytest.raises(ValueError, match=r"E036.*'0101'.*layers \[1, 3\].*layers \[1\].*\[3\] stayed causal"):
        spacy.load(path)


def test_initialize_measures_the_attention_pattern(model_dir, layer_3_stays_causal):
    nlp = build_pipeline(model_dir, unmask="0011")
    with pytest.raises(ValueError, match=r"E036.*layers \[2, 3\].*layers \[2\].*\[3\] stayed causal"):
        nlp.initialize()
