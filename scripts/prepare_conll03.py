#!/usr/bin/env python
"""Turn a local copy of CoNLL-2003 English into train/dev/test spaCy DocBins.

Why a dedicated reader: CoNLL-2003 circulates in two layouts, the original
shared-task files (``eng.train``, ``eng.testa``, ``eng.testb``; NER in IOB1, where
an entity starts with ``I-``) and a converted copy (``train.txt``, ``valid.txt``,
``test.txt``; IOB2). Their ``-DOCSTART-`` lines differ, and reading IOB1 as if it
were IOB2 merges or drops entities. This script detects the layout, converts IOB1
to IOB2 per sentence, and writes one Doc per ``-DOCSTART-`` document.

CoNLL-2003 is not openly licensed: the data is read from wherever the user keeps
it and the DocBins are written to a local output directory. Never commit either.

Each line is ``WORD POS CHUNK NER``; ``token.tag_`` is the PTB POS column, sentence
starts are set, and ``doc.ents`` comes from the NER column. The text has no spacing
information, so every token is followed by a space.

Usage::

    python scripts/prepare_conll03.py INPUT_DIR OUTPUT_DIR
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import spacy
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

# Layout name -> (tag scheme, {output split: input file name}).
LAYOUTS: dict[str, tuple[str, dict[str, str]]] = {
    "original": ("iob1", {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"}),
    "converted": ("iob2", {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}),
}
DOCSTART = "-DOCSTART-"


class ConversionError(ValueError):
    """Bad input, reported as ``file:line: message``."""


@dataclass
class Sentence:
    words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    ner: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # source line of each token


def detect_layout(input_dir: Path) -> tuple[str, dict[str, Path]]:
    """Return the tag scheme and the split -> file mapping of the one layout present."""
    found = []
    for scheme, names in LAYOUTS.values():
        if all((input_dir / name).is_file() for name in names.values()):
            found.append((scheme, {split: input_dir / name for split, name in names.items()}))
    if len(found) != 1:
        expected = " or ".join(", ".join(names.values()) for _, names in LAYOUTS.values())
        problem = "both layouts" if found else "neither layout"
        raise ConversionError(f"{input_dir}: found {problem}; expected exactly one of: {expected}")
    return found[0]


def read_documents(path: Path) -> list[list[Sentence]]:
    """Read a CoNLL-2003 file into documents of sentences.

    ``-DOCSTART-`` lines (whatever their other columns) open a new document and are
    not tokens; blank lines end sentences; a missing final newline is fine.
    """
    documents: list[list[Sentence]] = [[]]
    sentence = Sentence()
    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            columns = raw.split()
            if not columns or columns[0] == DOCSTART:
                if sentence.words:
                    documents[-1].append(sentence)
                    sentence = Sentence()
                if columns and documents[-1]:
                    documents.append([])
                continue
            if len(columns) != 4:
                raise ConversionError(f"{path}:{line_no}: expected 4 columns (WORD POS CHUNK NER), got {len(columns)}")
            sentence.words.append(columns[0])
            sentence.tags.append(columns[1])
            sentence.ner.append(columns[3])
            sentence.lines.append(line_no)
    if sentence.words:
        documents[-1].append(sentence)
    return [doc for doc in documents if doc]


def to_iob2(sentence: Sentence, scheme: str, path: Path) -> list[str]:
    """Return the sentence's NER tags in IOB2.

    IOB1: an ``I-X`` that does not continue an ``X`` entity starts one, so it becomes
    ``B-X``; ``B-X`` (only used between two adjacent ``X`` entities) is kept.
    IOB2: the tags are checked, and an ``I-X`` that does not continue an ``X`` entity
    is an error rather than being guessed at.
    """
    iob2: list[str] = []
    previous = "O"
    for tag, line_no in zip(sentence.ner, sentence.lines):
        prefix, _, label = tag.partition("-")
        if tag != "O" and (prefix not in ("B", "I") or not label):
            raise ConversionError(f"{path}:{line_no}: invalid NER tag {tag!r}")
        continues = previous != "O" and previous[2:] == label
        if prefix == "I" and not continues:
            if scheme == "iob2":
                raise ConversionError(f"{path}:{line_no}: invalid IOB2 sequence: {tag} after {previous}")
            tag = f"B-{label}"
        iob2.append(tag)
        previous = tag
    return iob2


def document_to_doc(vocab: Vocab, sentences: list[Sentence], scheme: str, path: Path) -> Doc:
    """Build one Doc (all tokens followed by a space) for one ``-DOCSTART-`` document."""
    words, tags, sent_starts, ents = [], [], [], []
    for sentence in sentences:
        words.extend(sentence.words)
        tags.extend(sentence.tags)
        sent_starts.extend([True] + [False] * (len(sentence.words) - 1))
        ents.extend(to_iob2(sentence, scheme, path))
    return Doc(vocab, words=words, tags=tags, sent_starts=sent_starts, ents=ents)


def convert_file(path: Path, scheme: str, vocab: Vocab) -> list[Doc]:
    return [document_to_doc(vocab, document, scheme, path) for document in read_documents(path)]


def describe(docs: list[Doc]) -> str:
    """One line of counts, comparable with the published CoNLL-2003 statistics."""
    sentences = sum(len(list(doc.sents)) for doc in docs)
    tokens = sum(len(doc) for doc in docs)
    labels = Counter(ent.label_ for doc in docs for ent in doc.ents)
    return (
        f"{len(docs)} docs, {sentences} sentences, {tokens} tokens, "
        f"{sum(labels.values())} entities {dict(sorted(labels.items()))}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Convert CoNLL-2003 English (eng.train/eng.testa/eng.testb in IOB1, or "
            "train.txt/valid.txt/test.txt in IOB2) into train/dev/test .spacy files."
        )
    )
    parser.add_argument("input_dir", type=Path, help="directory holding one of the two CoNLL-2003 layouts")
    parser.add_argument("output_dir", type=Path, help="where to write train.spacy, dev.spacy, test.spacy")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, list[Doc]]:
    args = parse_args(argv)
    scheme, files = detect_layout(args.input_dir)
    print(f"{args.input_dir}: {', '.join(p.name for p in files.values())} ({scheme.upper()})")
    vocab = spacy.blank("en").vocab
    args.output_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[Doc]] = {}
    for split, path in files.items():
        docs = convert_file(path, scheme, vocab)
        output = args.output_dir / f"{split}.spacy"
        DocBin(docs=docs).to_disk(output)
        print(f"{split}: {path.name} -> {output}: {describe(docs)}")
        result[split] = docs
    return result


if __name__ == "__main__":
    try:
        main()
    except ConversionError as error:
        sys.exit(f"error: {error}")
