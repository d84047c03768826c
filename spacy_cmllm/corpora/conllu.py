"""CoNLL-U files, parsed by the ``conllu`` package, located to the line.

``read_blocks`` gives every sentence block with its comments and its rows as the raw
column strings (for tools that rewrite CoNLL-U and must keep columns byte for byte),
plus the current ``# newdoc id``. ``read_conllu`` reads the annotation a tagger + ner
Doc needs: one syntactic word per line (integer IDs), FORM, UPOS, XPOS, spacing from
``SpaceAfter=No`` and an IOB2 entity tag in MISC (``NER=B-PER``, checked).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import conllu
from conllu.exceptions import ParseException
from conllu.parser import DEFAULT_FIELDS, parse_dict_value

from .iob2 import check_iob2
from .sentences import CorpusError, Sentence


@dataclass
class Block:
    """One blank-line separated sentence block."""

    comments: dict[str, str | None]  # ``# key = value`` lines
    rows: list[list[str]]  # the columns of each token line, as written
    lines: list[int]  # source line of each row
    line_no: int  # source line of the block's first line
    doc_id: str | None = None  # the latest ``# newdoc id`` at or before this block


def _raw(line: list[str], i: int) -> str:
    return line[i]


def read_blocks(path: str | Path, *, n_columns: int | None = len(DEFAULT_FIELDS)) -> Iterator[Block]:
    """Yield the sentence blocks of a CoNLL-U(-like) file. Every token line must have
    ``n_columns`` tab-separated columns (None: any number); a missing final blank line is
    fine."""
    path = Path(path)
    doc_id: str | None = None
    chunk: list[str] = []
    chunk_lines: list[int] = []

    def parse() -> Block | None:
        nonlocal doc_id
        token_lines = [no for no, text in zip(chunk_lines, chunk) if not text.lstrip().startswith("#")]
        if not token_lines:
            return None
        width = n_columns or max(len(text.split("\t")) for text in chunk if not text.lstrip().startswith("#"))
        for no, text in zip(chunk_lines, chunk):
            if text.lstrip().startswith("#"):
                continue
            columns = text.split("\t")
            if n_columns and len(columns) != n_columns:
                raise CorpusError(path, no, f"expected {n_columns} tab-separated columns, got {len(columns)}")
            if any("  " in column for column in columns):
                # The conllu parser splits columns on two spaces as well as on tabs.
                raise CorpusError(path, no, "two consecutive spaces in a column; columns are separated by tabs")
        fields = [f"c{i}" for i in range(width)]
        try:
            tokens = conllu.parse_token_and_metadata(
                "\n".join(chunk), fields=fields, field_parsers={name: _raw for name in fields}
            )
        except ParseException as err:
            raise CorpusError(path, chunk_lines[0], f"not CoNLL-U: {err}") from None
        comments = dict(tokens.metadata)
        if "newdoc id" in comments:
            doc_id = comments["newdoc id"]
        rows = [list(token.values()) for token in tokens]
        return Block(comments, rows, token_lines, chunk_lines[0], doc_id)

    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            if line.strip():
                chunk.append(line)
                chunk_lines.append(line_no)
                continue
            block = parse()
            if block is not None:
                yield block
            chunk, chunk_lines = [], []
    block = parse()
    if block is not None:
        yield block


def read_conllu(path: str | Path, *, ner_key: str | None = "NER") -> Iterator[Sentence]:
    """Yield the sentences of a CoNLL-U file with words, spacing, XPOS (``tags``), UPOS
    (``pos``), ``doc_id``, ``sent_id``, ``text`` and the IOB2 ``ner`` tags from MISC
    ``<ner_key>=`` (every word needs one; None: no entities, all ``O``).

    Multiword-token lines and empty nodes are refused rather than guessed at.
    """
    path = Path(path)
    for block in read_blocks(path):
        tags: list[str] = []
        pos: list[str] = []
        spaces: list[bool] = []
        sentence = Sentence(
            tags=tags,
            pos=pos,
            spaces=spaces,
            doc_id=block.doc_id,
            sent_id=block.comments.get("sent_id"),
            text=block.comments.get("text"),
        )
        for row, line_no in zip(block.rows, block.lines):
            if not row[0].isdigit():
                raise CorpusError(
                    path,
                    line_no,
                    f"ID {row[0]!r}: multiword tokens and empty nodes are not supported "
                    "(expected one syntactic word per line, as in assets/ewt)",
                )
            misc = parse_dict_value(row[9]) or {}
            if ner_key is None:
                tag = "O"
            elif (value := misc.get(ner_key)) is None:
                raise CorpusError(path, line_no, f"no {ner_key}= tag in MISC column {row[9]!r}")
            else:
                tag = value
            sentence.words.append(row[1])
            pos.append(row[3])
            tags.append(row[4])
            spaces.append(misc.get("SpaceAfter") != "No")
            sentence.ner.append(tag)
            sentence.lines.append(line_no)
        check_iob2(sentence.ner, source=path, lines=sentence.lines)
        yield sentence
