"""The Thinc models this package builds and takes, by their input and output types.

One name per ``Model[In, Out]``, so that a builder, its forward and the component that
holds the model agree on what flows through it, and mypy's thinc plugin can check each
``chain`` against them.
"""

from spacy.tokens import Doc
from spacy_transformers.data_classes import FullTransformerBatch
from thinc.api import Model
from thinc.types import Floats2d, Ragged

# The ``transformer`` component's model (CausalMaskLLM.v1-v4): the decoder's piece vectors,
# per Doc, in spacy-transformers' batch, for the listeners to read.
CausalMaskModelT = Model[list[Doc], FullTransformerBatch]

# One vector per token, per Doc: a listener of the decoder, or spaCy's own Tok2Vec.
Tok2VecModelT = Model[list[Doc], list[Floats2d]]

# TransformerListener.v1: a token's vector from its piece vectors in doc._.trf_data.
ListenerModelT = Model[list[Doc], list[Floats2d]]

# What makes one vector of a token's piece vectors (reduce_mean.v1, ...).
PoolingModelT = Model[Ragged, Floats2d]

# The head on each token's vector: dropout, then a softmax over the IOB2 classes.
ClassifierModelT = Model[Floats2d, Floats2d]

# BIOTagger.v1, the bio_tagger component's model: per Doc, (tokens, classes) probabilities.
BIOTaggerModelT = Model[list[Doc], list[Floats2d]]
