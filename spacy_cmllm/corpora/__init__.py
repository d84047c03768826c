"""Reading annotated corpora into spaCy Docs: one reader per format, one IOB2 check.

* ``conll``: CoNLL-2003-style column files (``WORD POS CHUNK NER``, ``-DOCSTART-``
  documents), NER in IOB1 (converted) or IOB2 (checked); which of CoNLL-2003's two
  layouts a directory holds.
* ``conllu``: CoNLL-U (through the ``conllu`` package) with UPOS, XPOS, ``SpaceAfter=No``
  and an IOB2 entity tag in MISC (``NER=B-PER``), or raw blocks for tools that rewrite them.
* ``iob2``: IOB2 checking and IOB1 → IOB2 conversion.
* ``sentences``: the common ``Sentence``, grouping sentences into Docs, building Docs.

Bad input raises ``CorpusError`` (a ValueError) reading ``file:line: what is wrong``; a
corrupted corpus is never repaired by guessing.
"""

from .conll import conll03_files, read_conll
from .conllu import Block, read_blocks, read_conllu
from .iob2 import check_iob2, entity_labels, iob1_to_iob2
from .sentences import CorpusError, Sentence, describe, group_sentences, sentences_to_doc, sentences_to_docs

__all__ = [
    "Block",
    "CorpusError",
    "Sentence",
    "check_iob2",
    "conll03_files",
    "describe",
    "entity_labels",
    "group_sentences",
    "iob1_to_iob2",
    "read_blocks",
    "read_conll",
    "read_conllu",
    "sentences_to_doc",
    "sentences_to_docs",
]
