"""Command line: `python -m spacy_cmllm probe|annotate ...`."""

import argparse
import sys
from collections.abc import Sequence

from .cli import annotate_command, probe_command
from .errors import CodedError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spacy_cmllm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    probe_command.add_arguments(commands.add_parser("probe", help="measure which layers attend to the right"))
    annotate_command.add_arguments(
        commands.add_parser("annotate", help="annotate a JSONL/Parquet corpus, locally or on Ray")
    )
    args = parser.parse_args(argv)
    try:
        return {"probe": probe_command.run, "annotate": annotate_command.run}[args.command](args)
    except CodedError as err:
        # Our errors carry their own explanation; a traceback adds nothing for a CLI user.
        print(str(err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
