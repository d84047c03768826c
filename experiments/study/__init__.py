"""The layer-wise study on Ray Tune: the sweep's runs as Tune trials, pruned by successive
halving on the dev NER F1 that spaCy's evaluation loop reports, in phases.

* ``run``: the phases (screen, finalists, rows) and their plan.
* ``tune``: the trainable (trial.train_and_score with the Tune logger), Ray, the callbacks.
* ``logger``: the spaCy logger that reports each evaluation to Tune
  (``spacy-cmllm.TuneLogger.v1``, registered when the trial imports it).
* ``scheduler``: ASHA that never stops the anchors ``0000`` and ``1111``; the rungs.
* ``ledger``: every trial that ended, so that a study continues elsewhere.
* ``bootstrap``: per-document counts and 95 % bootstrap intervals over documents.
* ``claims``: the paper's three claims judged from the paired differences: held, not
  held or cannot tell, by one stated rule.
* ``report``: the summary, the plot, and where a study stands.

Ray is imported only where it is used: ``pip install -e ".[study]"``.
"""
