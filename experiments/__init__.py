"""The experiment harness of this repository: configurations -> `spacy train` -> scores -> CSV rows.

Not part of the wheel (setup.cfg packages only ``spacy_cmllm``): it reads this repository's
``configs/`` and writes ``benchmarks/results/``, which no user of the package has. The
command-line front ends are ``python -m scripts.sweep`` and ``python -m scripts.study``, run
from the repository root so that this folder is importable.

One run, one core
-----------------
A *run* is one configuration (model, config file, unmask spec, config overrides) at one
seed; a *budget* fixes how long and on what it trains (steps, words per batch, evaluation
frequency, patience) and what it is scored on. For every run both harnesses do the same:

* ``runs.overrides_for``: the config overrides of a run under a budget (one warm-up rule);
* ``trial.train_and_score``: ``spacy train`` in this process, then the trained pipeline
  scored on the dev and test sets by ``scoring``, written as a record (``trial.json``);
* ``rows.make_row``: the record as a row of the one CSV schema (``rows.COLUMNS``); rows
  written before this harness are read through ``legacy``.

The study is the sweep with a scheduler
---------------------------------------
``sweep`` trains a fixed list of runs to the end of their budget, one after the other.
``study`` trains the same kind of runs as Ray Tune trials, with spaCy's loop reporting
full-dev evaluations to a scheduler that may stop a run early, and chooses the next phase's
runs from the dev scores. That is the sweep plus a scheduler, not the other way round: a run
is complete without a scheduler (a pruned trial simply never reaches ``train_and_score``'s
scoring and gets no row), and only the scheduler needs Ray, so the core imports nothing of
Ray and the sweep runs without the ``study`` extra.

One scoring rule
----------------
Scores are computed on the gold tokens (each document's own tokens, as CoNLL scores are):
seqeval strict IOB2 micro F1 for NER and chunks, accuracy for POS tags, from per-document
counts, which the study's bootstrap reads as well. The other way of scoring, from the raw
text through spaCy's tokenizer as ``spacy evaluate`` does (what the sweep reported before
this harness), is available as the ``*_text`` columns (``--text-scores``); the reports of
the sweep's older CSVs read those, since their rows have no other.
"""
