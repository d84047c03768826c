#!/usr/bin/env python
"""Turn a local copy of CoNLL-2003 English into train/dev/test spaCy DocBins.

Why a dedicated reader: CoNLL-2003 circulates in two layouts, the original
shared-task files (``eng.train``, ``eng.testa``, ``eng.testb``; NER in IOB1, where
an entity starts with ``I-``) and a converted copy (``train.txt``, ``valid.txt``,
``test.txt``; IOB2). Their ``-DOCSTART-`` lines differ, and reading IOB1 as if it
were IOB2 merges or drops entities. This script detects the layout, converts IOB1
to IOB2 per sentence, and writes one Doc per ``-DOCSTART-`` document. With
``--train-doc-words W`` the training split is cut further, at sentence boundaries,
into Docs of consecutive sentences of one document with at most W words each (a
longer sentence stays whole, as its own Doc); dev and test stay whole documents.

CoNLL-2003 is not openly licensed: the data is read from wherever the user keeps
it and the DocBins are written to a local output directory. Never commit either.

Each line is ``WORD POS CHUNK NER``; ``token.tag_`` is the PTB POS column, sentence
starts are set, ``doc.ents`` comes from the NER column and ``doc.spans["chunks"]`` from
the CHUNK column (IOB1 in the original layout, IOB2 in the converted one: converted or
checked exactly like the NER column), for a second ``bio_tagger`` with
``spans_key = "chunks"``. The text has no spacing
information, so every token is followed by a space.

Usage::

    python scripts/prepare_conll03.py INPUT_DIR OUTPUT_DIR [--train-doc-words W]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import spacy
from spacy.tokens import Doc, DocBin

from spacy_cmllm.corpora import CorpusError, conll03_files, describe, read_conll, sentences_to_docs

ConversionError = CorpusError  # bad input, reported as ``file:line: message``


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Convert CoNLL-2003 English (eng.train/eng.testa/eng.testb in IOB1, or "
            "train.txt/valid.txt/test.txt in IOB2) into train/dev/test .spacy files."
        )
    )
    parser.add_argument("input_dir", type=Path, help="directory holding one of the two CoNLL-2003 layouts")
    parser.add_argument("output_dir", type=Path, help="where to write train.spacy, dev.spacy, test.spacy")
    parser.add_argument(
        "--train-doc-words",
        type=int,
        default=0,
        metavar="W",
        help=(
            "cut the TRAINING split at sentence boundaries into Docs of at most W words (consecutive "
            "sentences of one document; a longer sentence is a Doc of its own); 0 (default) keeps whole "
            "documents. dev and test always stay whole documents"
        ),
    )
    args = parser.parse_args(argv)
    if args.train_doc_words < 0:
        parser.error("--train-doc-words must be 0 (whole documents) or a positive number of words")
    return args


def main(argv: list[str] | None = None) -> dict[str, list[Doc]]:
    args = parse_args(argv)
    scheme, files = conll03_files(args.input_dir)
    print(f"{args.input_dir}: {', '.join(p.name for p in files.values())} ({scheme.upper()})")
    vocab = spacy.blank("en").vocab
    args.output_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[Doc]] = {}
    for split, path in files.items():
        documents = read_conll(path, scheme)
        max_words = args.train_doc_words if split == "train" else 0
        docs = sentences_to_docs(
            vocab, [sentence for document in documents for sentence in document], max_words=max_words
        )
        output = args.output_dir / f"{split}.spacy"
        DocBin(docs=docs).to_disk(output)
        cut = f" (cut from {len(documents)} documents)" if max_words else ""
        print(f"{split}: {path.name} -> {output}: {describe(docs)}{cut}")
        result[split] = docs
    return result


if __name__ == "__main__":
    try:
        main()
    except ConversionError as error:
        sys.exit(f"error: {error}")
