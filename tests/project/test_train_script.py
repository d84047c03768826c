import pytest

from tests.scripts import ROOT, load_script

train_script = load_script(ROOT / "scripts" / "train.py", "train_script")


@pytest.mark.parametrize("value,want", [("0011", "0011"), (11, "0011"), (1, "0001"), (0, "0000"), (1100, "1100"), ('"0101"', "0101")])
def test_numeric_specs_get_their_zeros_back(value, want):
    assert train_script.normalise_groups(value, 4) == want


@pytest.mark.parametrize("value", ["00111", "0021", "", "abcd", 12])
def test_other_specs_refused(value):
    with pytest.raises(SystemExit):
        train_script.normalise_groups(value, 4)
