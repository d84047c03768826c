"""What a command line names: unmask specs (spaCy hands `0011` over as 11), seeds, lists of
names, and config overrides as one canonical string."""

import pytest

from experiments import spec


def test_all_means_every_configuration_of_four_groups():
    specs = spec.parse_unmask("all")
    assert len(specs) == len(set(specs)) == 16 and {"0000", "1111", "0011"} <= set(specs)
    # spaCy hands `--vars.sweep_unmask 0011` over as the number 11.
    assert spec.parse_unmask(11) == ["0011"]
    assert spec.parse_unmask("0001,1100") == ["0001", "1100"]
    with pytest.raises(SystemExit):
        spec.parse_unmask("0021")


def test_group_lists_restore_leading_zeros_and_refuse_a_bad_spec():
    assert spec.parse_groups("1100, 11") == ["1100", "0011"]
    assert spec.parse_groups("") == [] and spec.parse_groups(None) == []
    with pytest.raises(SystemExit, match="--mirrors"):
        spec.parse_groups("1102", option="--mirrors")


def test_seeds_are_integers_and_at_least_one():
    assert spec.parse_seeds("0, 1,2") == [0, 1, 2] and spec.parse_seeds(3) == [3]
    for bad in ("0,a", ""):
        with pytest.raises(SystemExit):
            spec.parse_seeds(bad)


def test_names_must_be_known():
    assert spec.parse_names("spacy-cnn, minilm", ("spacy-cnn", "minilm"), "--baselines") == ["spacy-cnn", "minilm"]
    assert spec.parse_names("", ("spacy-cnn",), "--baselines") == []
    with pytest.raises(SystemExit, match="unknown"):
        spec.parse_names("bert", ("spacy-cnn", "minilm"), "--baselines")


def test_overrides_are_canonical_and_parsed_like_the_cli():
    canonical = spec.parse_overrides(
        [
            "training.optimizer.learn_rate.initial_rate=0.003",
            'components.transformer.model.lora.target_modules=["q_proj","up_proj"]',
        ]
    )
    # Sorted, so the same overrides given in another order are the same configuration.
    assert canonical == spec.parse_overrides(
        [
            'components.transformer.model.lora.target_modules=["q_proj","up_proj"]',
            "training.optimizer.learn_rate.initial_rate=0.003",
        ]
    )
    assert spec.override_dict(canonical) == {
        "components.transformer.model.lora.target_modules": ["q_proj", "up_proj"],
        "training.optimizer.learn_rate.initial_rate": 0.003,
    }
    assert spec.parse_overrides(None) == "" and spec.override_dict("") == {}
    for bad in ("dropout=0.2", "components.ner.model.dropout", "a.b=1;c.d=2"):
        with pytest.raises(SystemExit):
            spec.parse_overrides([bad])
