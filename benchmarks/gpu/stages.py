"""The stages by name, their time limits, and what a stage's own process runs."""

import argparse
import time
import traceback
from collections.abc import Callable

from .cuda_gaps import stage_gaps
from .large_models import stage_7b
from .loading import stage_load_4bit, stage_load_bf16
from .profiling import stage_profile
from .recipe import register_random_source
from .report import StageRecord
from .speed_ratios import stage_speed
from .training import stage_train

# Hard limits in seconds per stage (imports and model loading included); the whole run is
# also bounded by --budget. Together they stay under 8 minutes.
STAGE_LIMITS = {
    "load_bf16": 30,
    "load_4bit": 40,
    "train": 75,
    "speed": 60,
    "profile": 70,
    "llama2_7b": 80,
    "mistral_7b": 80,
    "gaps": 45,
}
STAGES = list(STAGE_LIMITS)
STAGE_FUNCTIONS: dict[str, Callable[[StageRecord, argparse.Namespace, float], None]] = {
    "load_bf16": stage_load_bf16,
    "load_4bit": stage_load_4bit,
    "train": stage_train,
    "speed": stage_speed,
    "profile": stage_profile,
    "llama2_7b": lambda record, args, deadline: stage_7b(record, args, deadline, "llama2_7b"),
    "mistral_7b": lambda record, args, deadline: stage_7b(record, args, deadline, "mistral_7b"),
    "gaps": stage_gaps,
}


def run_child(args: argparse.Namespace) -> int:
    """Run the stage ``args.stage`` in this process, its record written to ``args.stage_out``;
    an error is recorded, not raised, so that the parent goes on with the next stage."""
    from spacy_cmllm.errors import CodedError

    record = StageRecord(args.stage_out)
    if args.cpu_dry_run:
        import torch

        # Tiny matrices: a second thread only adds synchronisation (tens of times slower
        # on a busy machine); the dry run tests the stages, not the CPU.
        torch.set_num_threads(1)
    register_random_source(args)
    started = time.perf_counter()
    deadline = started + (args.stage_seconds or STAGE_LIMITS[args.stage])
    try:
        STAGE_FUNCTIONS[args.stage](record, args, deadline)
    except CodedError as err:
        record.update(ok=False, error=str(err))
    except Exception as err:  # reported, not raised: the parent runs the next stage
        record.update(
            ok=False, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8).splitlines()[-12:]
        )
    record.update(stage_seconds=round(time.perf_counter() - started, 1))
    return 0
