"""CoNLL-2003-style column files: ``WORD POS CHUNK NER`` per line, blank lines between
sentences, ``-DOCSTART-`` lines between documents.

The text has no spacing information, so every word is followed by a space. The NER
and CHUNK columns are returned in IOB2: ``scheme="iob1"`` converts both (the original
shared-task files ``eng.train``/``eng.testa``/``eng.testb`` tag chunks IOB1-style too:
``B-`` only between two adjacent chunks of one type), ``scheme="iob2"`` checks both (the
converted ``train.txt``/``valid.txt``/``test.txt``). Reading IOB1 as IOB2 would merge
or drop entities and chunks.
"""

from pathlib import Path

from .iob2 import check_iob2, iob1_to_iob2
from .sentences import CorpusError, Sentence

DOCSTART = "-DOCSTART-"
SCHEMES = ("iob1", "iob2")
COLUMNS = ("WORD", "POS", "CHUNK", "NER")
# The two layouts CoNLL-2003 English circulates in, whose -DOCSTART- lines and tag schemes
# differ: layout name -> (tag scheme, {split: file name}).
CONLL03_LAYOUTS: dict[str, tuple[str, dict[str, str]]] = {
    "original": ("iob1", {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"}),
    "converted": ("iob2", {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}),
}


def conll03_files(directory: str | Path) -> tuple[str, dict[str, Path]]:
    """The tag scheme and the split -> file mapping of the one CoNLL-2003 layout in
    ``directory``. CorpusError when it holds neither layout or both: guessing would read
    IOB1 as IOB2."""
    directory = Path(directory)
    found = []
    for scheme, names in CONLL03_LAYOUTS.values():
        if all((directory / name).is_file() for name in names.values()):
            found.append((scheme, {split: directory / name for split, name in names.items()}))
    if len(found) != 1:
        expected = " or ".join(", ".join(names.values()) for _, names in CONLL03_LAYOUTS.values())
        problem = "both layouts" if found else "neither layout"
        raise CorpusError(directory, None, f"found {problem}; expected exactly one of: {expected}")
    return found[0]


def read_conll(path: str | Path, scheme: str = "iob2") -> list[list[Sentence]]:
    """The documents of a CoNLL-2003 file, each a list of sentences (``words``, ``tags`` =
    the POS column, ``ner`` and ``chunks`` in IOB2, ``doc_id`` = the document's position
    in the file).

    ``-DOCSTART-`` lines (whatever their other columns) open a new document and are not
    words; blank lines end sentences; a missing final newline is fine; a file without
    ``-DOCSTART-`` is one document.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}: choose one of {SCHEMES}")
    path = Path(path)
    documents: list[list[Sentence]] = [[]]
    sentence = Sentence(tags=[], chunks=[])

    def close_sentence() -> None:
        nonlocal sentence
        # This reader gives every sentence chunks.
        assert sentence.chunks is not None
        if sentence.words:
            if scheme == "iob1":
                sentence.ner = iob1_to_iob2(sentence.ner, source=path, lines=sentence.lines)
                sentence.chunks = iob1_to_iob2(sentence.chunks, source=path, lines=sentence.lines, what="chunk")
            else:
                check_iob2(sentence.ner, source=path, lines=sentence.lines)
                check_iob2(sentence.chunks, source=path, lines=sentence.lines, what="chunk")
            sentence.doc_id = str(len(documents) - 1)
            documents[-1].append(sentence)
        sentence = Sentence(tags=[], chunks=[])

    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            columns = raw.split()
            if not columns or columns[0] == DOCSTART:
                close_sentence()
                if columns and documents[-1]:
                    documents.append([])
                continue
            if len(columns) != len(COLUMNS):
                raise CorpusError(
                    path, line_no, f"expected {len(COLUMNS)} columns ({' '.join(COLUMNS)}), got {len(columns)}"
                )
            # This reader gives every sentence tags and chunks.
            assert sentence.tags is not None and sentence.chunks is not None
            sentence.words.append(columns[0])
            sentence.tags.append(columns[1])
            sentence.chunks.append(columns[2])
            sentence.ner.append(columns[3])
            sentence.lines.append(line_no)
    close_sentence()
    return [document for document in documents if document]
