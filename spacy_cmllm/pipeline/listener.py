"""A TransformerListener that refuses Docs its transformer never saw.

spacy-transformers' listener, in prediction, reads ``doc._.trf_data`` and silently turns a
missing one into zero vectors: with the transformer disabled
(``nlp.select_pipes(enable=["tagger"])``, ``nlp.pipe(..., disable=["transformer"])``) or its
states already removed by ``doc_cleaner``, a head tags every token from its bias alone (NNP
for everything) without a word. Only the listener sees this happen: the transformer does not
run at all, and spaCy's own tagger and parser cannot be changed. So the check wraps the
listener, and the configs use the wrapper instead of the bare listener.

The wrapper keeps a reference to the listener it wraps: spacy-transformers and spaCy find
and replace listeners by walking the model (``find_listeners``, ``replace_listeners``), and
once a listener has been replaced by a model of its own, the Docs no longer need
``trf_data`` and nothing is checked. At ``nlp.initialize`` the head's chain runs the listener
on sample Docs the transformer never annotated, only to infer shapes: the batch handed to
``initialize`` is exempt from the check for the one prediction that follows it.
"""

from collections.abc import Callable
from typing import Any

from spacy.tokens import Doc
from spacy_transformers.architectures import transformer_listener_tok2vec_v1
from spacy_transformers.layers import TransformerListener
from thinc.types import Floats2d

from ..errors import CmllmError, Errors
from .types import ListenerModelT, PoolingModelT


def build_checked_listener(*, pooling: PoolingModelT, grad_factor: float, upstream: str) -> ListenerModelT:
    """spacy-transformers.TransformerListener.v1 (same arguments, same weights) whose
    prediction raises E101 on a non-empty Doc without ``doc._.trf_data``."""
    inner = transformer_listener_tok2vec_v1(pooling=pooling, grad_factor=grad_factor, upstream=upstream)
    return CheckedListener(
        "checked_transformer_listener",
        _forward,
        init=_init,
        layers=[inner],
        refs={"listener": inner.get_ref("listener")},
        dims={"nO": None},
    )


class CheckedListener(ListenerModelT):
    """A Model with room for the batch that initialize() got (thinc's Model has slots)."""

    init_batch: list[Doc] | None = None


def _init(model: CheckedListener, X: list[Doc] | None = None, Y: Any = None) -> CheckedListener:
    # thinc's chain predicts on this very list right after initializing: shape inference.
    model.init_batch = X
    inner = model.layers[0]
    inner.initialize(X=X, Y=Y)
    if inner.has_dim("nO"):
        model.set_dim("nO", inner.get_dim("nO"), force=True)
    return model


def _forward(
    model: CheckedListener, docs: list[Doc], is_train: bool
) -> tuple[list[Floats2d], Callable[[list[Floats2d]], list[Doc]]]:
    listener = model.get_ref("listener")
    shape_inference = docs is model.init_batch
    model.init_batch = None
    if not is_train and not shape_inference and isinstance(listener, TransformerListener):
        missing = sum(1 for doc in docs if len(doc) and doc._.trf_data is None)
        if missing:
            upstream = listener.upstream_name
            named = "the pipeline's transformer component" if upstream == "*" else f"the component {upstream!r}"
            raise CmllmError(Errors.E101.format(missing=missing, total=len(docs), upstream=named))
    return model.layers[0](docs, is_train)
