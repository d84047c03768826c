"""The ``bio_tagger`` component: the paper's token-classification head over IOB2 labels.

A softmax over the classes O, B-X, I-X on top of any tok2vec (a TransformerListener of
the decoder, or spaCy's own Tok2Vec), trained with cross-entropy and decoded with
constrained Viterbi, so it never writes an invalid sequence. It writes ``doc.ents``, or
``doc.spans[spans_key]`` for chunking and other span tasks. The factory is registered in
``architectures.py``.

Spans already there when it runs (from an ``entity_ruler`` or ``span_ruler`` before it) are
kept, as spaCy's ``ner`` keeps preset entities: their tokens are fixed to O in the search
and the preset spans are written back unchanged, so a new span can neither overlap nor
continue one. ``overwrite = true`` replaces them instead.
"""

from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any, cast

import numpy
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Dropout, Model, Optimizer, Softmax_v2, chain, set_dropout_rate, with_array, zero_init
from thinc.types import Floats2d, Ints1d

from ..errors import CmllmError, Errors
from . import bio_classes
from .scorer import score_bio
from .types import BIOTaggerModelT, ClassifierModelT, Tok2VecModelT

# Marks a token whose gold class is unknown: it contributes no loss.
MISSING = -1
# Floor on probabilities before the log, so that a zero probability stays a finite score.
_MIN_PROB = 1e-30

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy-cmllm.BIOTagger.v1"
dropout = 0.1

[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 96
depth = 4
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


def build_bio_tagger_model(tok2vec: Tok2VecModelT, *, nO: int | None = None, dropout: float = 0.1) -> BIOTaggerModelT:
    """tok2vec, then dropout and a softmax over the IOB2 classes, per token.

    tok2vec (Model[List[Doc], List[Floats2d]]): the token vectors, e.g. a TransformerListener.
    nO (Optional[int]): the number of IOB2 classes, 1 + 2 per label; None = set from the
        labels at initialize.
    dropout (float): dropout on the token vectors before the softmax (0.1 in the paper).
    RETURNS (Model[List[Doc], List[Floats2d]]): per doc, (n_tokens, nO) class probabilities.
    """
    width = tok2vec.get_dim("nO") if tok2vec.has_dim("nO") else None
    # Zero weights: every class starts equally likely, so the first updates are not
    # spent undoing a random preference.
    output_layer = Softmax_v2(nO, width, init_W=zero_init)
    # Spelled out rather than ClassifierModelT: thinc's mypy plugin checks a chain only
    # between types written as Model[...] (it does not expand aliases).
    head_dropout: Model[Floats2d, Floats2d] = Dropout(dropout)
    head: ClassifierModelT = chain(head_dropout, output_layer)
    model: BIOTaggerModelT = chain(tok2vec, with_array(head))
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("dropout", head_dropout)
    model.set_ref("output_layer", output_layer)
    return model


class BIOTagger(TrainablePipe):
    """Labels spans with one IOB2 class per token; see the module docstring."""

    def __init__(
        self,
        vocab: Vocab,
        model: BIOTaggerModelT,
        name: str = "bio_tagger",
        *,
        spans_key: str | None = None,
        overwrite: bool = False,
        scorer: Callable | None = score_bio,
    ) -> None:
        """Construct the component (weights are sized at initialize).

        vocab (Vocab): the shared vocabulary.
        model (Model[List[Doc], List[Floats2d]]): per-token IOB2 class probabilities.
        name (str): the component's name in the pipeline and in the losses.
        spans_key (Optional[str]): None: write and learn doc.ents; a key: write and learn
            doc.spans[spans_key], leaving doc.ents alone.
        overwrite (bool): False: keep the entities (or spans under spans_key) a doc already
            has and predict around them; True: replace them.
        scorer (Optional[Callable]): called with the examples and spans_key.
        """
        self.vocab = vocab
        self.model = model
        self.name = name
        self.spans_key = spans_key
        self.overwrite = overwrite
        self.scorer = scorer
        # Only the labels: spans_key comes from the config, so a loaded pipeline can be
        # pointed at another key without the saved cfg overriding it.
        self.cfg: dict[str, Any] = {"labels": []}

    # -- labels --------------------------------------------------------------------------

    @property
    def labels(self) -> tuple[str, ...]:
        """The span labels (entity types), in class order."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> tuple[str, ...]:
        """What `spacy init labels` saves and initialize(labels=...) reads back."""
        return self.labels

    @property
    def class_names(self) -> list[str]:
        """The IOB2 classes: O, B-<label 0>, I-<label 0>, ..."""
        return bio_classes.class_names(self.labels)

    def add_label(self, label: str) -> int:
        """Add a span label before initialize.

        label (str): the label.
        RETURNS (int): 1 if it was added, 0 if it was there already.
        """
        if not isinstance(label, str) or not label:
            raise CmllmError(Errors.E065.format(name=self.name, label=label))
        if label in self.labels:
            return 0
        # Once the weights exist their shape is fixed; before, nO is (re)set at initialize.
        if self.model.get_ref("output_layer").has_param("W"):
            raise CmllmError(Errors.E062.format(name=self.name, label=label, labels=list(self.labels)))
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    # -- prediction ----------------------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> list[numpy.ndarray]:
        """The best valid IOB2 class ids of each doc (constrained Viterbi).

        docs (Iterable[Doc]): the docs.
        RETURNS (List[numpy.ndarray]): int64 class ids, one per token, per doc.
        """
        docs = list(docs)
        if not any(len(doc) for doc in docs):
            return [numpy.zeros(len(doc), dtype=numpy.int64) for doc in docs]
        probs = self.model.predict(docs)
        ops = self.model.ops
        class_ids = []
        for doc, p in zip(docs, probs):
            log_probs = numpy.log(numpy.maximum(ops.to_numpy(p), _MIN_PROB))
            allowed = None
            if not self.overwrite:
                reserved = self._reserved_tokens(doc)
                if reserved.any():
                    allowed = numpy.ones(log_probs.shape, dtype=bool)
                    allowed[reserved, 1:] = False
            class_ids.append(bio_classes.viterbi(log_probs, allowed))
        return class_ids

    def _reserved_tokens(self, doc: Doc) -> numpy.ndarray:
        """The tokens that new spans must leave alone: for doc.ents, those of preset
        entities and those blocked by doc.set_ents(blocked=...), as spaCy's ner reads them
        (an explicit O is no constraint: entity_ruler sets it on every other token); for
        spans, those covered by the group already under spans_key."""
        if self.spans_key is None:
            # ent_iob 1 = I, 3 = B (B with ent_type 0: blocked), 2 = O, 0 = missing.
            return numpy.isin(doc.to_array("ENT_IOB"), (1, 3))
        reserved = numpy.zeros(len(doc), dtype=bool)
        if self.spans_key in doc.spans:
            for span in doc.spans[self.spans_key]:
                reserved[span.start : span.end] = True
        return reserved

    def set_annotations(self, docs: Iterable[Doc], class_ids: Sequence[numpy.ndarray]) -> None:
        """Write the spans to doc.ents or doc.spans[spans_key], beside the preset ones
        (replacing them with overwrite = true). Other tokens of doc.ents become O.

        docs (Iterable[Doc]): the docs.
        class_ids (Sequence[numpy.ndarray]): from predict.
        """
        labels = self.labels
        for doc, ids in zip(docs, class_ids):
            spans = [Span(doc, start, end, label=labels[k]) for start, end, k in bio_classes.decode_spans(ids)]
            if self.spans_key is None:
                self._set_ents(doc, spans)
            else:
                self._set_spans(doc, spans)

    def _set_ents(self, doc: Doc, spans: list[Span]) -> None:
        if self.overwrite:
            doc.ents = spans
            return
        # The preset Span objects themselves, so that their kb_id and id survive.
        iob_type = doc.to_array(["ENT_IOB", "ENT_TYPE"])
        blocked = [doc[i : i + 1] for i in numpy.flatnonzero((iob_type[:, 0] == 3) & (iob_type[:, 1] == 0))]
        doc.set_ents(list(doc.ents) + spans, blocked=blocked, default="outside")

    def _set_spans(self, doc: Doc, spans: list[Span]) -> None:
        key = self.spans_key
        assert key is not None  # called for spans_key only
        if self.overwrite or key not in doc.spans:
            doc.spans[key] = spans
            return
        preset = doc.spans[key]
        merged = sorted(list(preset) + spans, key=lambda s: (s.start, s.end))
        doc.spans[key] = SpanGroup(doc, name=key, attrs=dict(preset.attrs), spans=merged)

    # -- training ------------------------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optimizer | None = None,
        losses: dict[str, float] | None = None,
    ) -> dict[str, float]:
        """One training step on a batch.

        examples (Iterable[Example]): the batch.
        drop (float): dropout rate of the tok2vec ([training] dropout). The head's own
            dropout is the architecture's `dropout`, which this does not change.
        sgd (Optional[Optimizer]): updates the weights when given.
        losses (Optional[Dict[str, float]]): the loss is added under the component's name.
        RETURNS (Dict[str, float]): losses.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "BIOTagger.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model.get_ref("tok2vec"), drop)
        probs, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_probs = self.get_loss(examples, probs)
        backprop(d_probs)
        # As spaCy's own pipes: callers may pass sgd=False for "no update" (typed as Optional).
        if sgd not in (None, False):  # type: ignore[comparison-overlap]
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: list[Floats2d]) -> tuple[float, list[Floats2d]]:
        """Cross-entropy over the IOB2 classes, summed over the tokens whose gold class is
        known; tokens without annotation contribute neither loss nor gradient.

        Summed, not averaged, as spaCy's tagger and parser do: the heads share the decoder,
        and a mean would shrink this head's gradient into the adapters by the number of
        tokens in the batch, next to the tagger's, so the decoder would hardly learn NER.

        examples (Iterable[Example]): the batch.
        scores (List[Floats2d]): the model's class probabilities per doc.
        RETURNS (Tuple[float, List[Floats2d]]): the summed loss and the gradient with respect
            to the softmax's input (Softmax_v2's backprop expects exactly this).
        """
        ops = self.model.ops
        xp = ops.xp
        truths = [self.gold_class_ids(eg) for eg in examples]
        loss = 0.0
        grads = []
        for probs, truth in zip(scores, truths):
            known = ops.asarray1f((truth != MISSING).astype("float32"))
            rows = xp.arange(len(truth))
            cols = ops.asarray1i(cast(Ints1d, numpy.where(truth == MISSING, 0, truth)))
            d_probs = probs.copy()
            d_probs[rows, cols] -= 1.0
            # thinc's array types have no overload for numpy's new-axis (None) index.
            d_probs *= known[:, None]  # type: ignore[call-overload]
            grads.append(d_probs)
            loss -= float((xp.log(xp.maximum(probs[rows, cols], _MIN_PROB)) * known).sum())
        return loss, grads

    def gold_class_ids(self, example: Example) -> numpy.ndarray:
        """The gold IOB2 class of each predicted token, MISSING where unknown.

        The reference spans are projected onto the predicted tokens through the example's
        alignment. A token is O only if every reference token it aligns to is annotated and
        outside all spans; for doc.ents, tokens with ent_iob 0 are not annotated; for
        spans, a doc without the key is not annotated at all.

        example (Example): predicted and reference doc.
        RETURNS (numpy.ndarray): int64 class ids, one per predicted token.
        """
        predicted, reference = example.predicted, example.reference
        ids = numpy.full(len(predicted), MISSING, dtype=numpy.int64)
        gold = self._gold_spans(reference)
        if gold is None:
            return ids
        spans, annotated = gold
        outside = annotated.copy()
        for span in spans:
            outside[span.start : span.end] = False
        x2y = example.alignment.x2y
        for i in range(len(predicted)):
            aligned = x2y[i]
            if len(aligned) and outside[aligned].all():
                ids[i] = bio_classes.OUTSIDE
        index = {label: k for k, label in enumerate(self.labels)}
        triples = []
        for span in example.get_aligned_spans_y2x(spans, allow_overlap=False):
            if span.label_ not in index:
                raise CmllmError(Errors.E061.format(name=self.name, label=span.label_, labels=list(self.labels)))
            triples.append((span.start, span.end, index[span.label_]))
        # Spans that do not align stay MISSING rather than O: their tokens are in a span.
        encoded = bio_classes.encode_spans(len(predicted), triples)
        in_span = encoded != bio_classes.OUTSIDE
        ids[in_span] = encoded[in_span]
        return ids

    def _gold_spans(self, reference: Doc) -> tuple[list[Span], numpy.ndarray] | None:
        """The reference spans, sorted, and which reference tokens are annotated; None if
        the doc has no annotation for this component."""
        if self.spans_key is None:
            if not reference.has_annotation("ENT_IOB"):
                return None
            annotated = numpy.array([token.ent_iob != 0 for token in reference], dtype=bool)
            return list(reference.ents), annotated
        if self.spans_key not in reference.spans:
            return None
        spans = sorted(reference.spans[self.spans_key], key=lambda s: (s.start, s.end))
        _check_no_overlap(reference, spans, self.spans_key)
        return spans, numpy.ones(len(reference), dtype=bool)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Any = None,
        labels: Iterable[str] | None = None,
    ) -> None:
        """Set the labels and size the model.

        get_examples (Callable[[], Iterable[Example]]): the training examples.
        nlp (Language): the pipeline (unused).
        labels (Optional[Iterable[str]]): the span labels, e.g. from `spacy init labels`;
            None = every label in the examples' doc.ents (or doc.spans[spans_key]).
        """
        validate_get_examples(get_examples, "BIOTagger.initialize")
        if labels is None:
            found: set[str] = set()
            for eg in get_examples():
                gold = self._gold_spans(eg.reference)
                if gold is not None:
                    found.update(span.label_ for span in gold[0])
            labels = found
        # Sorted, so that the class layout does not depend on the order of the data.
        for label in sorted(labels):
            self.add_label(label)
        if not self.labels:
            where = "doc.ents" if self.spans_key is None else f"doc.spans[{self.spans_key!r}]"
            raise CmllmError(Errors.E064.format(name=self.name, where=where))
        expected = bio_classes.n_classes(len(self.labels))
        output_layer = self.model.get_ref("output_layer")
        if not output_layer.has_dim("nO"):
            output_layer.set_dim("nO", expected)
        elif output_layer.get_dim("nO") != expected:
            raise CmllmError(
                Errors.E063.format(name=self.name, nO=output_layer.get_dim("nO"), n=len(self.labels), expected=expected)
            )
        doc_sample = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=doc_sample)

    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """The scorer's scores for doc.ents or doc.spans[spans_key]."""
        examples = list(examples)
        validate_examples(examples, "BIOTagger.score")
        kwargs.setdefault("spans_key", self.spans_key)
        return super().score(examples, **kwargs)


def _check_no_overlap(doc: Doc, spans: Sequence[Span], key: str) -> None:
    """Raise E060 if two of the sorted spans share a token: IOB2 has one tag per token."""
    last: Span | None = None
    for span in spans:
        if last is not None and span.start < last.end:
            raise CmllmError(
                Errors.E060.format(
                    key=key,
                    doc=_shorten(doc.text),
                    first=_describe(last),
                    second=_describe(span),
                )
            )
        if last is None or span.end > last.end:
            last = span


def _describe(span: Span) -> str:
    return f"{span.text!r} ({span.label_}, tokens {span.start}-{span.end})"


def _shorten(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
