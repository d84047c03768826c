"""The speed stage: the speed benchmark's ratios (benchmarks/speed.py) on the device."""

import argparse
import math

from .report import StageRecord


def stage_speed(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    import torch

    from ..speed_stages import SpeedOptions, measure

    options = SpeedOptions(device=torch.device(args.device), source=args.source)
    if args.cpu_dry_run:
        # Exercise every measurement, on little text: a dry run tests the stage, not the speed.
        options = SpeedOptions(
            device=options.device,
            source=args.source,
            repeats=1,
            train_steps=1,
            train_sentences=4,
            position_docs=2,
            words=300,
            tweets=40,
        )
    result = measure(options)
    ratios = result["ratios"]
    ok = all(math.isfinite(value) and value > 0 for value in ratios.values())
    unmet = [name for name, met in result["meets_targets"].items() if not met]
    record.update(
        ok=ok,
        ratios=ratios,
        targets=result["targets"],
        meets_targets=result["meets_targets"],
        words_per_s=result["words_per_s"],
        pieces_per_s=result["pieces_per_s"],
        training_positions_per_piece=result["training_positions"]["per_piece_training"],
        settings=result["settings"],
        text=result["text"],
        summary=", ".join(f"{name} {value:.2f}" for name, value in ratios.items())
        + (f"; below target: {', '.join(unmet)}" if unmet else "; all targets met"),
    )
