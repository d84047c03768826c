"""Scoring a trained pipeline: the rule (gold tokens) and the raw-text scores beside it.

The rule: each document is predicted on its own gold tokens, as CoNLL scores are, and
kept as per-document counts: NER and chunk spans as ``(tp, predicted, gold)`` (seqeval,
strict IOB2), POS tags as ``(correct, tokens)``. Micro scores are sums of those counts,
and the study's bootstrap resamples them. A task without a component in the run's config
gets no score at all, not a score of 0.

Beside it, where asked for: the same documents scored as ``spacy evaluate`` scores them,
each predicted from its raw text through spaCy's tokenizer, the gold spans projected onto
the predicted tokens (``ents_seqeval_f``, ``spans_chunks_seqeval_f``, ``tag_acc``, and
spaCy's own exact-match ``ents_f``).
"""

import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from spacy_cmllm.corpora.sentences import CHUNKS_KEY

from .runs import CONFIGS_DIR

# What the harness scores, in report order; the kind of score of each.
TASKS = ("ner", "chunks", "pos")
KINDS = {"ner": "f1", "chunks": "f1", "pos": "acc"}
# Raw-text scores kept, by their name in the record, from spaCy's scores.
TEXT_SCORES = {
    "ner_f1": "ents_seqeval_f",
    "chunk_f1": f"spans_{CHUNKS_KEY}_seqeval_f",
    "tag_acc": "tag_acc",
    "ents_f": "ents_f",
}


@cache
def tasks_of(config: str) -> tuple[str, ...]:
    """The tasks the pipeline of ``config`` (a file in configs/) has a component for."""
    return config_tasks(CONFIGS_DIR / config)


def config_tasks(path: Path) -> tuple[str, ...]:
    """The tasks a pipeline config has a component for, read from its [components]: a
    tagger is POS, spaCy's ner or a bio_tagger on doc.ents is NER, a bio_tagger on
    doc.spans["chunks"] is chunking (configs/spacy-cnn.cfg has no chunker)."""
    from spacy.util import load_config

    config = load_config(path, interpolate=False)
    found = set()
    for name in config["nlp"]["pipeline"]:
        component = config["components"].get(name, {})
        factory = component.get("factory")
        if factory == "tagger":
            found.add("pos")
        elif factory == "ner" or (factory == "bio_tagger" and component.get("spans_key") is None):
            found.add("ner")
        elif factory == "bio_tagger" and component.get("spans_key") == CHUNKS_KEY:
            found.add("chunks")
    return tuple(task for task in TASKS if task in found)


def total(counts: Sequence[Sequence[int]] | None, task: str) -> float | None:
    """A task's micro score (a fraction) from its per-document counts; None without any."""
    if not counts:
        return None
    import numpy

    from .study.bootstrap import score

    return float(score(numpy.asarray(counts).sum(axis=0), KINDS[task]))


def subset(source: Path, dest: Path, docs: int) -> Path:
    """The first ``docs`` documents of a DocBin written to ``dest`` (0: ``source`` itself)."""
    if not docs:
        return source
    import spacy
    from spacy.tokens import DocBin

    picked = list(DocBin().from_disk(source).get_docs(spacy.blank("en").vocab))[:docs]
    DocBin(docs=picked, store_user_data=False).to_disk(dest)
    return dest


def doc_counts(nlp, docs) -> dict[str, list[list[int]]]:
    """Per document: NER and chunk (tp, predicted, gold) spans (seqeval strict IOB2) and
    POS (correct, tokens), each document predicted on its gold tokens."""
    from spacy.tokens import Doc

    from spacy_cmllm.pipeline.scorer import iob2_tags

    from .study.bootstrap import span_counts

    counts: dict[str, list[list[int]]] = {"ner": [], "chunks": [], "pos": []}
    inputs = (Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]) for doc in docs)
    for gold, predicted in zip(docs, nlp.pipe(inputs)):
        n = len(gold)
        if gold.has_annotation("ENT_IOB"):
            counts["ner"].append(list(span_counts(iob2_tags(n, gold.ents), iob2_tags(n, predicted.ents))))
        if CHUNKS_KEY in gold.spans:
            counts["chunks"].append(
                list(
                    span_counts(iob2_tags(n, gold.spans[CHUNKS_KEY]), iob2_tags(n, predicted.spans.get(CHUNKS_KEY, [])))
                )
            )
        if gold.has_annotation("TAG"):
            counts["pos"].append([sum(p.tag_ == g.tag_ for p, g in zip(predicted, gold)), n])
    return {task: rows for task, rows in counts.items() if rows}


def text_scores(nlp, path: Path) -> dict[str, float | None]:
    """The documents of ``path`` scored from their raw text, as ``spacy evaluate`` does."""
    from spacy.training import Corpus

    scores = nlp.evaluate(Corpus(path)(nlp))
    return {name: scores.get(key) for name, key in TEXT_SCORES.items()}


def score_pipeline(model_dir: Path, sets: dict[str, Path], *, text: bool = False, use_gpu: int = -1) -> dict[str, Any]:
    """A trained pipeline's scores on each named set of documents (e.g. dev and test):
    per set its per-document counts (the rule) and token count, and with ``text`` its
    raw-text scores; the seconds each way of scoring took (``eval_seconds``,
    ``eval_seconds_text``), so that times compare like with like."""
    import spacy
    from spacy.tokens import DocBin

    if use_gpu >= 0:
        spacy.require_gpu(use_gpu)
    loading = time.perf_counter()
    nlp = spacy.load(model_dir)
    result: dict[str, Any] = {"tokens": {}}
    if text:
        # First, and with the pipeline's loading, as the sweep timed its scoring before the
        # gold-token columns: those rows' eval_seconds, read as eval_seconds_text, compare.
        result["text"] = {name: text_scores(nlp, path) for name, path in sets.items()}
        result["eval_seconds_text"] = round(time.perf_counter() - loading, 1)
    start = time.perf_counter()
    for name, path in sets.items():
        docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
        result[name] = doc_counts(nlp, docs)
        result["tokens"][name] = sum(len(doc) for doc in docs)
    result["eval_seconds"] = round(time.perf_counter() - start, 1)
    return result
