#!/usr/bin/env python
"""Convert an ``assets/ewt`` CoNLL-U file (POS + ``NER=`` in MISC) into a spaCy DocBin.

Why not ``spacy convert``: its CoNLL-U converter takes entities only from MISC
``NE=``/``name=`` keys (not ``NER=``) and silently reads an ``I-`` tag that opens an
entity as ``B-``. This converter reads exactly the format written by
``build_ewt_assets.py`` and fails with the file and line of any bad annotation, so a
corrupted corpus cannot silently train a model on wrong entity spans.

Each Doc is one UD document (``# newdoc id``), or, with ``--n-sents-per-doc N``,
consecutive groups of at most N sentences of one document (groups never mix two
documents). Tokens are the syntactic words with ``SpaceAfter=No`` spacing;
``token.tag_`` is XPOS (column 5), ``token.pos_`` is UPOS (column 4), sentence
starts are set, and ``doc.ents`` comes from the IOB2 ``NER=`` tags.

Invalid IOB2 is an error, never repaired: an ``I-X`` tag must follow ``B-X`` or
``I-X``. (seqeval would silently read such a tag as the start of a new entity.)

Usage::

    python scripts/convert_ewt.py INPUT.conllu OUTPUT.spacy [--n-sents-per-doc N]
"""
from __future__ import annotations

import argparse
import sys
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import spacy
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

_COMMENT_RE = re.compile(r"^#\s*([^=]+?)\s*=\s*(.*)$")


class ConversionError(ValueError):
    """Bad input, reported as ``file:line: message``."""


@dataclass
class ConlluSentence:
    """The columns of one CoNLL-U sentence that a tagger + ner Doc needs."""

    doc_id: str | None
    sent_id: str | None
    words: list[str] = field(default_factory=list)
    spaces: list[bool] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    pos: list[str] = field(default_factory=list)
    ner: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # source line of each word


def misc_value(misc: str, key: str) -> str | None:
    """Value of ``key`` in a CoNLL-U MISC field (``A=1|B=2``), or None."""
    for item in misc.split("|"):
        name, sep, value = item.partition("=")
        if sep and name == key:
            return value
    return None


def parse_word(sentence: ConlluSentence, columns: list[str], path: Path, line_no: int) -> None:
    """Append one word line to ``sentence``, checking what the Doc will need."""
    if len(columns) != 10:
        raise ConversionError(f"{path}:{line_no}: expected 10 tab-separated columns, got {len(columns)}")
    if not columns[0].isdigit():
        raise ConversionError(
            f"{path}:{line_no}: ID {columns[0]!r}: multiword tokens and empty nodes are not supported "
            "(expected one syntactic word per line, as in assets/ewt)"
        )
    ner = misc_value(columns[9], "NER")
    if ner is None:
        raise ConversionError(f"{path}:{line_no}: no NER= tag in MISC column {columns[9]!r}")
    sentence.words.append(columns[1])
    sentence.pos.append(columns[3])
    sentence.tags.append(columns[4])
    sentence.spaces.append(misc_value(columns[9], "SpaceAfter") != "No")
    sentence.ner.append(ner)
    sentence.lines.append(line_no)


def read_conllu(path: Path) -> Iterator[ConlluSentence]:
    """Yield the sentences of a CoNLL-U file, carrying the current ``# newdoc id``."""
    doc_id: str | None = None
    sentence: ConlluSentence | None = None
    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            if not line.strip():
                if sentence is not None and sentence.words:
                    yield sentence
                sentence = None
                continue
            if sentence is None:
                sentence = ConlluSentence(doc_id=doc_id, sent_id=None)
            if line.startswith("#"):
                match = _COMMENT_RE.match(line)
                if match and match.group(1) == "newdoc id":
                    doc_id = sentence.doc_id = match.group(2)
                elif match and match.group(1) == "sent_id":
                    sentence.sent_id = match.group(2)
                continue
            parse_word(sentence, line.split("\t"), path, line_no)
    if sentence is not None and sentence.words:
        yield sentence


def check_iob2(sentence: ConlluSentence, path: Path) -> None:
    """Raise on a tag that is not O/B-X/I-X, or an I-X that does not continue an X entity.

    Entities never cross a sentence boundary, so each sentence is checked on its own.
    """
    previous = "O"
    for tag, line_no in zip(sentence.ner, sentence.lines):
        prefix, _, label = tag.partition("-")
        if tag != "O" and (prefix not in ("B", "I") or not label):
            raise ConversionError(f"{path}:{line_no}: invalid NER tag {tag!r} (expected O, B-X or I-X)")
        if prefix == "I" and previous[2:] != label:
            raise ConversionError(
                f"{path}:{line_no}: invalid IOB2 sequence: {tag} after {previous} "
                f"(an I-{label} entity must start with B-{label})"
            )
        previous = tag


def group_sentences(sentences: Iterable[ConlluSentence], n_sents: int | None) -> Iterator[list[ConlluSentence]]:
    """Group sentences into Docs: per document, optionally cut into chunks of ``n_sents``."""
    group: list[ConlluSentence] = []
    for sentence in sentences:
        new_doc = bool(group) and sentence.doc_id != group[-1].doc_id
        if new_doc or (n_sents and len(group) == n_sents):
            yield group
            group = []
        group.append(sentence)
    if group:
        yield group


def sentences_to_doc(vocab: Vocab, sentences: list[ConlluSentence]) -> Doc:
    """Build one Doc with words, spacing, XPOS/UPOS, sentence starts and entities."""
    words, spaces, tags, pos, sent_starts, ents = [], [], [], [], [], []
    for sentence in sentences:
        words.extend(sentence.words)
        spaces.extend(sentence.spaces)
        tags.extend(sentence.tags)
        pos.extend(sentence.pos)
        sent_starts.extend([True] + [False] * (len(sentence.words) - 1))
        ents.extend(sentence.ner)
    return Doc(vocab, words=words, spaces=spaces, tags=tags, pos=pos, sent_starts=sent_starts, ents=ents)


def convert(input_path: Path, n_sents_per_doc: int | None = None) -> list[Doc]:
    """Read ``input_path`` and return its Docs (validating every sentence first)."""
    vocab = spacy.blank("en").vocab
    sentences = list(read_conllu(input_path))
    for sentence in sentences:
        check_iob2(sentence, input_path)
    return [sentences_to_doc(vocab, group) for group in group_sentences(sentences, n_sents_per_doc)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a CoNLL-U file with UPOS/XPOS and NER=IOB2 in MISC (assets/ewt) to a spaCy DocBin."
    )
    parser.add_argument("input", type=Path, help="input .conllu file, e.g. assets/ewt/train.conllu")
    parser.add_argument("output", type=Path, help="output .spacy file (parent directories are created)")
    parser.add_argument(
        "--n-sents-per-doc",
        "-n",
        type=int,
        default=None,
        metavar="N",
        help="make Docs of at most N consecutive sentences of one document instead of one Doc per document",
    )
    args = parser.parse_args(argv)
    if args.n_sents_per_doc is not None and args.n_sents_per_doc < 1:
        parser.error("--n-sents-per-doc must be at least 1")
    return args


def main(argv: list[str] | None = None) -> list[Doc]:
    args = parse_args(argv)
    docs = convert(args.input, args.n_sents_per_doc)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs).to_disk(args.output)
    n_sents = sum(len(list(doc.sents)) for doc in docs)
    n_tokens = sum(len(doc) for doc in docs)
    labels = Counter(ent.label_ for doc in docs for ent in doc.ents)
    print(
        f"{args.input} -> {args.output}: {len(docs)} docs, {n_sents} sentences, {n_tokens} tokens, "
        f"{sum(labels.values())} entities {dict(sorted(labels.items()))}"
    )
    return docs


if __name__ == "__main__":
    try:
        main()
    except ConversionError as error:
        sys.exit(f"error: {error}")
