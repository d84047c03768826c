"""The layer-wise study on Ray Tune: one spaCy training run per trial, pruned by
successive halving on the dev NER F1 that spaCy's evaluation loop reports.

* ``logger``: the spaCy logger that reports each evaluation to Tune
  (registered as ``spacy-cmllm.TuneLogger.v1`` in ``pipeline/architectures.py``).
* ``scheduler``: ASHA that never stops the anchors ``0000`` and ``1111``; the rungs.
* ``trial``: the Tune trainable (config + overrides -> ``spacy train``) and test scoring.
* ``bootstrap``: per-document counts and 95 % bootstrap intervals over documents.
* ``claims``: the paper's three claims judged from the paired differences: held, not
  held or cannot tell, by one stated rule.

Ray is imported only where it is used: ``pip install "spacy-cmllm[study]"``.
"""
