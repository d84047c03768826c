"""`spacy train` with the unmask spec given as a group string of a fixed number of groups.

spaCy reads command-line values as JSON, so a project variable `--vars.unmask 0011` arrives
as the number 11 and would reach the config as "11": a different spec. The project always
uses the paper's m groups, so a purely numeric value is zero-padded back to m digits here
(spacy_cmllm.cli.groups), and anything else that is not a string of m '0'/'1' characters
is refused.

Usage: python scripts/train.py CONFIG OUTPUT --unmask SPEC [--groups 4] [--gpu-id -1] [--section.key value ...]
"""

import argparse
import sys
from pathlib import Path

from spacy.cli._util import parse_config_overrides
from spacy.cli.train import train

from spacy_cmllm.cli.groups import normalise_groups
from spacy_cmllm.errors import CmllmError


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--unmask", required=True)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--gpu-id", type=int, default=-1)
    args, rest = parser.parse_known_args(argv)
    overrides = parse_config_overrides(rest)
    try:
        overrides["components.transformer.model.unmask"] = normalise_groups(args.unmask, args.groups)
    except CmllmError as err:
        parser.error(f"--unmask: {err}")
    print(f"unmask = {overrides['components.transformer.model.unmask']!r}")
    train(args.config, args.output, use_gpu=args.gpu_id, overrides=overrides)


if __name__ == "__main__":
    main(sys.argv[1:])
