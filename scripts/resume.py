"""Resume an interrupted `spacy train` run from its last saved checkpoint.

spaCy writes `model-last` at every evaluation (training.eval_frequency steps) and
`model-best` whenever the score improves, so an interrupted run loses at most the steps
since the last evaluation. This script starts a new run whose components are sourced
from the checkpoint (adapter weights, heads, labels, tokenizer all come from it) and that
trains for the steps that were still to go. The optimizer's moments and the position in
the learning-rate schedule are not saved by spaCy: the resumed run warms up again over
the remaining steps.

Usage: python scripts/resume.py CHECKPOINT OUTPUT --steps N [--gpu-id -1] [--section.key value ...]
e.g.   python scripts/resume.py training/ewt/model-last training/ewt-resumed --steps 200 \
           --paths.train corpus/ewt/train.spacy --paths.dev corpus/ewt/dev.spacy
"""

import argparse
import sys
import tempfile
from pathlib import Path

from spacy.cli._util import parse_config_overrides
from spacy.cli.train import train
from spacy.util import load_config


def resume_config(checkpoint: Path, steps: int):
    """The checkpoint's own config with every component sourced from the checkpoint."""
    config = load_config(checkpoint / "config.cfg")
    for name in config["nlp"]["pipeline"]:
        config["components"][name] = {"source": str(checkpoint)}
    config["training"]["max_steps"] = steps
    config["training"]["max_epochs"] = 0
    schedule = config["training"]["optimizer"].get("learn_rate")
    if isinstance(schedule, dict) and "total_steps" in schedule:
        schedule["total_steps"] = steps
        schedule["warmup_steps"] = min(int(schedule.get("warmup_steps", 0)), max(steps // 10, 1))
    return config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--steps", type=int, required=True, help="steps still to train")
    parser.add_argument("--gpu-id", type=int, default=-1)
    args, rest = parser.parse_known_args(argv)
    if not (args.checkpoint / "config.cfg").exists():
        raise SystemExit(f"{args.checkpoint} is not a saved pipeline (no config.cfg)")
    config = resume_config(args.checkpoint, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resume.cfg"
        config.to_disk(path)
        train(path, args.output, use_gpu=args.gpu_id, overrides=parse_config_overrides(rest))


if __name__ == "__main__":
    main(sys.argv[1:])
