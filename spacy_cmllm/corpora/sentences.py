"""The sentence every reader yields, and how sentences become spaCy Docs."""

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class CorpusError(ValueError):
    """Bad input, reported as ``file:line: message`` (or ``file: message``)."""

    def __init__(self, source: str | Path, line: int | None, message: str) -> None:
        self.source = str(source)
        self.line = line
        self.message = message
        where = self.source if line is None else f"{self.source}:{line}"
        super().__init__(f"{where}: {message}")


@dataclass
class Sentence:
    """One annotated sentence, whatever file format it came from.

    ``ner`` (and ``chunks``, syntactic chunks where the format has them) are IOB2 once a
    reader returns them. ``tags`` are fine-grained tags (PTB POS,
    CoNLL-U XPOS), ``pos`` coarse UPOS tags, ``spaces`` whether a space follows each word
    (None: every word is followed by one). ``lines`` holds the source line of each word.
    """

    words: list[str] = field(default_factory=list)
    ner: list[str] = field(default_factory=list)
    chunks: list[str] | None = None
    tags: list[str] | None = None
    pos: list[str] | None = None
    spaces: list[bool] | None = None
    doc_id: str | None = None
    sent_id: str | None = None
    text: str | None = None
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.words)


def group_sentences(
    sentences: Iterable[Sentence],
    *,
    max_sentences: int | None = None,
    max_words: int | None = None,
) -> Iterator[list[Sentence]]:
    """Consecutive sentences of one document (same ``doc_id``) per group, cut further into
    groups of at most ``max_sentences`` sentences and at most ``max_words`` words. Cuts fall
    only between sentences: a sentence longer than ``max_words`` is a group of its own.
    None or 0 means no limit."""
    group: list[Sentence] = []
    n_words = 0
    for sentence in sentences:
        if group and (
            sentence.doc_id != group[-1].doc_id
            or (max_sentences and len(group) >= max_sentences)
            or (max_words and n_words + len(sentence) > max_words)
        ):
            yield group
            group, n_words = [], 0
        group.append(sentence)
        n_words += len(sentence)
    if group:
        yield group


CHUNKS_KEY = "chunks"


def sentences_to_doc(vocab, sentences: Sequence[Sentence]):
    """One Doc of ``sentences``: words, spacing, tags, UPOS, sentence starts, entities and,
    where every sentence has them, chunks as ``doc.spans["chunks"]`` (all from IOB2).
    Annotation layers missing from any sentence are left unset."""
    from spacy.tokens import Doc, Span

    words: list[str] = []
    spaces: list[bool] = []
    # As Doc declares it: a list's item type must match exactly.
    sent_starts: list[bool | int | None] = []
    ents: list[str] = []
    for sentence in sentences:
        words.extend(sentence.words)
        spaces.extend(sentence.spaces if sentence.spaces is not None else [True] * len(sentence))
        sent_starts.extend([True] + [False] * (len(sentence) - 1))
        ents.extend(sentence.ner)
    layers: dict[str, list[str]] = {}
    for name in ("tags", "pos"):
        if all(getattr(s, name) is not None for s in sentences):
            layers[name] = [value for s in sentences for value in getattr(s, name)]
    doc = Doc(
        vocab,
        words=words,
        spaces=spaces,
        sent_starts=sent_starts,
        ents=ents or None,
        tags=layers.get("tags"),
        pos=layers.get("pos"),
    )
    if sentences and all(s.chunks is not None for s in sentences):
        chunks = [tag for s in sentences for tag in s.chunks or ()]
        doc.spans[CHUNKS_KEY] = [Span(doc, start, end, label=label) for start, end, label in iob2_spans(chunks)]
    return doc


def sentences_to_docs(
    vocab, sentences: Iterable[Sentence], *, max_sentences: int | None = None, max_words: int | None = None
) -> list:
    """One Doc per group of ``group_sentences`` (consecutive sentences of one document, at
    most ``max_sentences`` sentences and ``max_words`` words; None or 0: no limit)."""
    groups = group_sentences(sentences, max_sentences=max_sentences, max_words=max_words)
    return [sentences_to_doc(vocab, group) for group in groups]


def iob2_spans(tags: Sequence[str]) -> list[tuple]:
    """(start, end, label) of each span of a valid IOB2 sequence."""
    spans: list[list] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-") or (
            tag.startswith("I-") and not (spans and spans[-1][1] == i and spans[-1][2] == tag[2:])
        ):
            spans.append([i, i + 1, tag[2:]])
        elif tag.startswith("I-"):
            spans[-1][1] = i + 1
    return [tuple(span) for span in spans]


def describe(docs) -> str:
    """One line of counts: docs, sentences, tokens and entities per label."""
    sentences = sum(len(list(doc.sents)) for doc in docs)
    tokens = sum(len(doc) for doc in docs)
    labels = Counter(ent.label_ for doc in docs for ent in doc.ents)
    chunks = sum(len(doc.spans[CHUNKS_KEY]) for doc in docs if CHUNKS_KEY in doc.spans)
    return (
        f"{len(docs)} docs, {sentences} sentences, {tokens} tokens, "
        f"{sum(labels.values())} entities {dict(sorted(labels.items()))}" + (f", {chunks} chunks" if chunks else "")
    )
