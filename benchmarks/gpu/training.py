"""The train stage: the recipe through spaCy's own training loop (spacy.training.loop.train,
what `spacy train --gpu-id N` runs), stopped at the stage's time limit right after an
evaluation, then dev scored with seqeval."""

import argparse
import itertools
import math
import os
import time
from pathlib import Path
from typing import TypedDict

from .recipe import CONFIG, heads_gpu_id, prepare_corpus, recipe_overrides
from .report import StageRecord


class TimeUp(Exception):
    """Raised before a training step once the stage's training time is spent."""


class StepInfo(TypedDict):
    """What the logger keeps of the info spaCy's loop hands it at an evaluation."""

    step: int
    words: int
    losses: dict[str, float]


def eval_frequency(steps: int) -> int:
    """Evaluate (one dev doc: spaCy's loop hands losses and words to its logger only at an
    evaluation) every 10 steps when that divides the run, else at its end only."""
    return 10 if steps % 10 == 0 else steps


_REGISTERED = itertools.count()


def train_callbacks(train_deadline: float, every: int, infos: list[StepInfo], stamps: list[float]):
    """A logger that keeps every evaluation's info, and a before_update callback that stamps
    each step's start and stops the run (TimeUp) once the deadline has passed, right after an
    evaluation, so that the last info's words and losses are exact. Registered under names
    unique to this process."""
    from spacy.util import registry

    suffix = f"{os.getpid()}_{next(_REGISTERED)}"

    def logger():
        def setup(nlp, stdout, stderr):
            def log_step(info):
                if info is not None:
                    infos.append({"step": info["step"], "words": info["words"], "losses": dict(info["losses"])})

            return log_step, lambda: None

        return setup

    def stop_at():
        def before_update(nlp, step_info):
            stamps.append(time.perf_counter())
            step = step_info["step"]
            if step and step % every == 1 % every and time.perf_counter() > train_deadline:
                raise TimeUp(step)

        return before_update

    registry.loggers.register(f"gpu_check_record.{suffix}", func=logger)
    registry.callbacks.register(f"gpu_check_stop_at.{suffix}", func=stop_at)
    return {"@loggers": f"gpu_check_record.{suffix}"}, {"@callbacks": f"gpu_check_stop_at.{suffix}"}


def stage_train(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    """The recipe through spaCy's own training loop (spacy.training.loop.train, what `spacy
    train --gpu-id N` runs), stopped at the stage's time limit, then dev scored."""
    import io

    import spacy
    import torch
    from spacy.pipeline import TrainablePipe
    from spacy.scorer import Scorer
    from spacy.tokens import DocBin
    from spacy.training import Corpus, Example
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as spacy_train
    from spacy.util import load_config
    from thinc.api import require_gpu

    from spacy_cmllm.pipeline.model import BackboneShim, get_backbone

    from ..pipelines import component_of, transformer_of

    stage_seconds = deadline - time.perf_counter()
    # Keep a fifth of the stage (at least 20 s) to score dev after training.
    train_deadline = deadline - max(20.0, 0.2 * stage_seconds)
    score_deadline = deadline - 5.0
    started = time.perf_counter()
    corpus = Path(args.work) / "corpus"
    record.update(corpus=prepare_corpus(corpus, args.conll_dir))
    dev = list(DocBin().from_disk(corpus / "dev.spacy").get_docs(spacy.blank("en").vocab))
    DocBin(docs=dev[:1]).to_disk(corpus / "dev-one.spacy")
    gpu_id = heads_gpu_id(args.device)
    every = eval_frequency(args.steps)
    overrides = {**recipe_overrides(args, corpus), "training.eval_frequency": every}
    record.update(prepare_seconds=round(time.perf_counter() - started, 1), overrides=overrides, gpu_id=gpu_id)

    started = time.perf_counter()
    if gpu_id >= 0:
        require_gpu(gpu_id)
    infos: list[StepInfo] = []
    stamps: list[float] = []
    config = load_config(CONFIG, overrides=overrides, interpolate=False)
    config["training"]["logger"], config["training"]["before_update"] = train_callbacks(
        train_deadline, every, infos, stamps
    )
    nlp = init_nlp(config, use_gpu=gpu_id)
    backbone = get_backbone(transformer_of(nlp).model)
    record.update(
        init_seconds=round(time.perf_counter() - started, 1),
        decoder_device=str(backbone.device),
        heads_ops=type(component_of(nlp, "ner", TrainablePipe).model.ops).__name__,
        training_loop="spacy.training.loop.train",
    )
    cut_by_time = False
    try:
        spacy_train(nlp, None, use_gpu=gpu_id, stdout=io.StringIO(), stderr=io.StringIO())
    except TimeUp:
        cut_by_time = True
    if args.device == "cuda":
        torch.cuda.synchronize()
    ended = stamps[-1] if cut_by_time else time.perf_counter()
    train_seconds = ended - stamps[0] if stamps else 0.0
    last: StepInfo = infos[-1] if infos else {"step": -1, "losses": {}, "words": 0}
    # The losses of an evaluation are summed over the steps since the one before.
    span = last["step"] - infos[-2]["step"] if len(infos) > 1 else 1
    losses_last = {name: float(value) / span for name, value in last["losses"].items()}
    finite = bool(infos) and all(math.isfinite(v) for info in infos for v in info["losses"].values())
    shim = transformer_of(nlp).model.shims[0]
    assert isinstance(shim, BackboneShim)  # CausalMaskLLM's, which holds the adapters' stepper
    stepper = shim.stepper
    words = int(last["words"])
    record.update(
        steps=last["step"] + 1,
        steps_cut_by_time=cut_by_time,
        eval_frequency=every,
        train_seconds=round(train_seconds, 1),
        words=words,
        words_per_second=round(words / train_seconds, 1) if train_seconds else None,
        losses_first=infos[0]["losses"] if infos else None,
        losses_last=losses_last,
        losses_last_note=f"mean per step over the last {span} steps",
        losses_finite=finite,
        adapter_grad_norm_last=getattr(stepper, "last_grad_norm", None),
        gpu_peak_memory_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if args.device == "cuda" else None,
    )
    step_losses = infos

    # Score dev (seqeval strict IOB2 through the component's scorer), within the limit.
    started = time.perf_counter()
    examples = list(Corpus(corpus / "dev.spacy")(nlp))
    if args.dev_docs:
        examples = examples[: args.dev_docs]
    scored = []
    hidden_kind = None
    # doc_cleaner would drop the decoder states whose array type is checked below.
    for eg, doc in zip(examples, nlp.pipe((eg.predicted for eg in examples), batch_size=32, disable=["doc_cleaner"])):
        scored.append(Example(doc, eg.reference))
        if hidden_kind is None and len(doc):
            hidden_kind = type(doc._.trf_data.model_output.last_hidden_state).__module__.split(".")[0]
        if time.perf_counter() > score_deadline:
            break
    scores = Scorer(nlp).score(scored)
    f1 = scores.get("ents_seqeval_f")
    ok = bool(step_losses) and finite and f1 is not None and f1 >= args.min_f1
    ok = ok and torch.device(record.data["decoder_device"]).type == args.device
    record.update(
        ok=ok,
        score_seconds=round(time.perf_counter() - started, 1),
        dev_docs_scored=len(scored),
        dev_docs=len(examples),
        dev_tokens_scored=sum(len(eg.reference) for eg in scored),
        dev_seqeval_f1=f1,
        dev_seqeval_p=scores.get("ents_seqeval_p"),
        dev_seqeval_r=scores.get("ents_seqeval_r"),
        dev_tag_acc=scores.get("tag_acc"),
        min_f1=args.min_f1,
        hidden_arrays=hidden_kind,
        summary=(
            f"{record.data['steps']} steps{' (cut by time)' if cut_by_time else ''} of spaCy's loop in {train_seconds:.0f} s on {record.data['decoder_device']} "
            f"(heads: {record.data['heads_ops']}); dev seqeval F1 {f1 if f1 is None else round(100 * f1, 1)} on {len(scored)}/{len(examples)} docs"
        ),
    )
