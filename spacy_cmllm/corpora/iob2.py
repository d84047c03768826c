"""IOB2 span tags (entities, chunks): checking, and conversion from IOB1.

IOB2: every entity starts with ``B-X``; ``I-X`` continues an ``X`` entity. IOB1 (the
original CoNLL-2003 files): an entity starts with ``I-X``, and ``B-X`` is used only to
start an ``X`` entity right after another ``X`` entity. Entities never cross a sentence
boundary, so tags are checked and converted one sentence at a time.
"""

from collections.abc import Collection, Sequence
from pathlib import Path

from .sentences import CorpusError


def _split(tag: str, labels: Collection[str] | None, what: str = "NER") -> tuple[str, str] | None:
    """(prefix, label) of a well-formed tag, None for O; raises ValueError otherwise."""
    if tag == "O":
        return None
    prefix, _, label = tag.partition("-")
    if prefix not in ("B", "I") or not label or (labels is not None and label not in labels):
        expected = "O, B-X or I-X" + (f" with X in {', '.join(labels)}" if labels is not None else "")
        raise ValueError(f"invalid {what} tag {tag!r} (expected {expected})")
    return prefix, label


def _line(lines: Sequence[int] | None, i: int) -> int | None:
    return lines[i] if lines is not None else None


def check_iob2(
    tags: Sequence[str],
    *,
    source: str | Path = "<tags>",
    lines: Sequence[int] | None = None,
    labels: Collection[str] | None = None,
    what: str = "NER",
) -> None:
    """Raise CorpusError on a tag that is not O/B-X/I-X (X in ``labels`` if given) or an
    ``I-X`` that does not continue an ``X`` entity. Never repairs: seqeval would silently
    read such an ``I-X`` as the start of a new entity. ``lines[i]`` locates tag i."""
    previous = "O"
    for i, tag in enumerate(tags):
        try:
            parts = _split(tag, labels, what)
        except ValueError as err:
            raise CorpusError(source, _line(lines, i), str(err)) from None
        if parts is not None and parts[0] == "I" and previous[2:] != parts[1]:
            raise CorpusError(
                source,
                _line(lines, i),
                f"invalid IOB2 sequence: {tag} after {previous} (an I-{parts[1]} entity must start with B-{parts[1]})",
            )
        previous = tag


def iob1_to_iob2(
    tags: Sequence[str],
    *,
    source: str | Path = "<tags>",
    lines: Sequence[int] | None = None,
    labels: Collection[str] | None = None,
    what: str = "NER",
) -> list[str]:
    """IOB1 tags as IOB2: an ``I-X`` that does not continue an ``X`` entity becomes ``B-X``;
    ``B-X`` is kept. Malformed tags raise CorpusError."""
    converted: list[str] = []
    previous = "O"
    for i, tag in enumerate(tags):
        try:
            parts = _split(tag, labels, what)
        except ValueError as err:
            raise CorpusError(source, _line(lines, i), str(err)) from None
        if parts is not None and parts[0] == "I" and previous[2:] != parts[1]:
            tag = f"B-{parts[1]}"
        converted.append(tag)
        previous = tag
    return converted


def entity_labels(tags: Sequence[str]) -> list[str]:
    """The label of each entity of an IOB2 sequence, one per ``B-`` tag."""
    return [tag[2:] for tag in tags if tag.startswith("B-")]
