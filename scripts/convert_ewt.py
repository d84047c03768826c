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
from pathlib import Path

import spacy
from spacy.tokens import Doc, DocBin

from spacy_cmllm.corpora import CorpusError, describe, read_conllu, sentences_to_docs

ConversionError = CorpusError  # bad input, reported as ``file:line: message``


def convert(input_path: Path, n_sents_per_doc: int | None = None) -> list[Doc]:
    """Read ``input_path`` and return its Docs (validating every sentence first)."""
    sentences = list(read_conllu(input_path))
    return sentences_to_docs(spacy.blank("en").vocab, sentences, max_sentences=n_sents_per_doc)


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
    print(f"{args.input} -> {args.output}: {describe(docs)}")
    return docs


if __name__ == "__main__":
    try:
        main()
    except ConversionError as error:
        sys.exit(f"error: {error}")
