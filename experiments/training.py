"""`spacy train` of one config in this process, with what the harness needs of spaCy's loop:
how many words it trained on, and (for the study) no evaluation after the first update."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def train(
    config: Path, output: Path, overrides: dict[str, Any], *, use_gpu: int = -1, skip_first_evaluation: bool = False
) -> dict[str, Any]:
    """Train with spaCy's own loop; return its progress at the last step (``step``,
    ``epoch``, ``words``: the words of the training batches, counted as spaCy counts them)."""
    from contextlib import nullcontext

    from spacy.cli.train import train as spacy_train

    skipping = first_evaluation_skipped() if skip_first_evaluation else nullcontext()
    with skipping, progress_recorded() as progress:
        spacy_train(config, output, use_gpu=use_gpu, overrides=overrides)
    return progress


@contextmanager
def progress_recorded() -> Iterator[dict[str, Any]]:
    """Within the block, the dict it yields holds the step, epoch and words of spaCy's
    training loop at its latest step.

    spaCy hands these only to the config's logger; recording them here gives every run
    the same measure of how much it trained on, whatever logger the harness chose."""
    from spacy.training import loop

    progress: dict[str, Any] = {}
    steps = loop.train_while_improving

    def recording(*args, **kwargs):
        for batch, info, is_best in steps(*args, **kwargs):
            progress.update({key: info[key] for key in ("step", "epoch", "words") if key in info})
            yield batch, info, is_best

    loop.train_while_improving = recording
    try:
        yield progress
    finally:
        loop.train_while_improving = steps


@contextmanager
def first_evaluation_skipped() -> Iterator[None]:
    """Within the block, spaCy's training loop skips its first evaluation.

    spaCy evaluates after the first update as well as every ``eval_frequency`` steps. On
    the full CoNLL-2003 dev set that first evaluation costs minutes of every trial for a
    score no rung reads. Its call returns no scores (score 0.0), which the Tune logger
    counts as round 0 without reporting it; later evaluations run as usual.
    """
    from spacy.training import loop

    create = loop.create_evaluation_callback

    def create_skipping_first(nlp, dev_corpus, weights):
        evaluate = create(nlp, dev_corpus, weights)
        calls = 0

        def skipping_first():
            nonlocal calls
            calls += 1
            return (0.0, {}) if calls == 1 else evaluate()

        return skipping_first

    loop.create_evaluation_callback = create_skipping_first
    try:
        yield
    finally:
        loop.create_evaluation_callback = create
