"""Universal POS (``token.pos_``) from the predicted fine tag, by rules learnt from a corpus.

PTB tags map to UPOS almost one to one; where they do not (IN: ADP or SCONJ; VBZ: VERB or
AUX; DT: DET or PRON ...), the word mostly decides. So the rules are, per tag, its most
frequent UPOS in the training data, and per (tag, lower-cased word) seen there with another
majority UPOS, that one. They become patterns of spaCy's ``attribute_ruler`` (exceptions
added after the tag rules, so they win), which then maps the tagger's predictions at no
training cost. See docs/components.md for why rules rather than a second tagger.
"""

import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from ..errors import Warnings

Rules = tuple[dict[str, str], dict[tuple[str, str], str]]


def learn_pos_rules(docs: Iterable[Doc], *, min_count: int = 1) -> Rules:
    """The majority UPOS of each fine tag, and the (tag, lower-cased word) pairs whose
    majority UPOS differs from their tag's.

    docs (Iterable[Doc]): annotated docs; tokens without a tag or a POS are skipped.
    min_count (int): how often a (tag, word) pair must be seen to become an exception.
    RETURNS (Tuple[Dict[str, str], Dict[Tuple[str, str], str]]): tag -> UPOS and
        (tag, word) -> UPOS.
    """
    by_tag: dict[str, Counter] = defaultdict(Counter)
    by_word: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for doc in docs:
        for token in doc:
            if token.tag_ and token.pos_:
                by_tag[token.tag_][token.pos_] += 1
                by_word[token.tag_, token.text.lower()][token.pos_] += 1
    tag_map = {tag: _majority(counts) for tag, counts in sorted(by_tag.items())}
    exceptions = {}
    for (tag, word), counts in sorted(by_word.items()):
        pos = _majority(counts)
        if pos != tag_map[tag] and sum(counts.values()) >= min_count:
            exceptions[tag, word] = pos
    return tag_map, exceptions


def _majority(counts: Counter) -> str:
    # Ties go to the alphabetically first label, so the rules do not depend on data order.
    return min(counts, key=lambda label: (-counts[label], label))


def rules_to_patterns(rules: Rules) -> list[dict]:
    """attribute_ruler patterns for the rules: tag rules first, then the word exceptions
    (the attribute_ruler applies later patterns last, so they win)."""
    tag_map, exceptions = rules
    patterns = [{"patterns": [[{"TAG": tag}]], "attrs": {"POS": pos}} for tag, pos in tag_map.items()]
    patterns += [
        {"patterns": [[{"TAG": tag, "LOWER": word}]], "attrs": {"POS": pos}} for (tag, word), pos in exceptions.items()
    ]
    return patterns


def read_docs(path: str | Path) -> list[Doc]:
    """The docs of a .spacy file, or of every .spacy file under a directory."""
    path = Path(path)
    files = sorted(path.rglob("*.spacy")) if path.is_dir() else [path]
    vocab = Vocab()
    return [doc for file in files for doc in DocBin().from_disk(file).get_docs(vocab)]


def pos_patterns_from_corpus(path: str | Path | None, *, min_count: int = 1) -> list[dict]:
    """attribute_ruler patterns learnt from a training corpus; none (with W110) when there
    is no corpus or it has no tags with POS, so that token.pos_ stays unset rather than wrong.

    path (Optional[Union[str, Path]]): a .spacy file or a directory of them.
    min_count (int): see learn_pos_rules.
    """
    if path is None:
        warnings.warn(Warnings.W110.format(why="no training corpus was given (paths.train is null)"), stacklevel=2)
        return []
    rules = learn_pos_rules(read_docs(path), min_count=min_count)
    if not rules[0]:
        warnings.warn(Warnings.W110.format(why=f"no token of {str(path)!r} has both a tag and a POS"), stacklevel=2)
        return []
    return rules_to_patterns(rules)
