"""Group strings from command lines: spaCy's JSON reading of `--vars.unmask 0011` (the
number 11) gets its leading zeros back; anything else that is not a group string is refused."""

import pytest

from spacy_cmllm.cli.groups import normalise_groups
from spacy_cmllm.errors import CmllmError


@pytest.mark.parametrize(
    "value,want", [("0011", "0011"), (11, "0011"), (1, "0001"), (0, "0000"), (1100, "1100"), ('"0101"', "0101")]
)
def test_numeric_specs_get_their_zeros_back(value, want):
    assert normalise_groups(value, 4) == want


@pytest.mark.parametrize("value", ["00111", "0021", "", "abcd", 12])
def test_other_specs_refused(value):
    with pytest.raises(CmllmError, match="E140"):
        normalise_groups(value, 4)
