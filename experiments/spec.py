"""What a command line names: unmask specs, seeds, config overrides, lists of names."""

import itertools
from collections.abc import Iterable
from typing import Any

from spacy_cmllm.cli.groups import normalise_groups
from spacy_cmllm.errors import CmllmError

# The paper's number of groups of layers.
GROUPS = 4


def all_specs(groups: int = GROUPS) -> list[str]:
    """Every group string of ``groups`` groups, from all causal to all unmasked."""
    return ["".join(bits) for bits in itertools.product("01", repeat=groups)]


def parse_groups(value: Any, groups: int = GROUPS, option: str = "--unmask") -> list[str]:
    """A comma list of group strings (leading zeros restored); "" or None for none."""
    try:
        return [normalise_groups(part, groups) for part in str(value or "").split(",") if part.strip()]
    except CmllmError as err:
        raise SystemExit(f"{option}: {err}") from None


def parse_unmask(value: Any, groups: int = GROUPS) -> list[str]:
    """--unmask: "all" or a comma list of group strings."""
    return all_specs(groups) if str(value).strip() == "all" else parse_groups(value, groups)


def parse_seeds(value: Any) -> list[int]:
    """--seeds: a comma list of integers, at least one."""
    try:
        seeds = [int(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--seeds {value!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise SystemExit("--seeds: give at least one seed")
    return seeds


def parse_names(value: Any, known: Iterable[str], option: str) -> list[str]:
    """A comma list of names, each one of ``known``; "" for none."""
    names = [name.strip() for name in str(value or "").split(",") if name.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"{option}: unknown {unknown}; choose from {list(known)}")
    return names


def parse_overrides(values: Iterable[str]) -> str:
    """--set KEY=VALUE items as one canonical string (sorted, ';'-joined): how a run's
    variant is written in its CSV row and compared."""
    items = []
    for value in values or []:
        key, sep, setting = value.partition("=")
        if not sep or not key.strip() or "." not in key or ";" in value:
            raise SystemExit(
                f"--set {value!r}: expected SECTION.KEY=VALUE (a config override, no ';'), "
                f"e.g. components.ner.model.dropout=0.2"
            )
        items.append(f"{key.strip()}={setting.strip()}")
    return ";".join(sorted(items))


def override_dict(overrides: str) -> dict[str, Any]:
    """The canonical string back as spaCy config overrides (values parsed like the CLI's)."""
    from spacy.cli._util import parse_config_overrides

    args = [
        part
        for item in overrides.split(";")
        if item
        for part in ("--" + item.partition("=")[0], item.partition("=")[2])
    ]
    return parse_config_overrides(args)
