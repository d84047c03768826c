"""Results files of named entries (int8_scores.json, int8_smoothing.json, ...): each run of a
benchmark over a trained pipeline and a corpus adds, or replaces, one entry by its --name."""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def pipeline_parser(doc: str | None, results: Path, *, prog: str) -> argparse.ArgumentParser:
    """The arguments these benchmarks share: a trained pipeline, a .spacy file of gold
    Docs, and the named entry of a results file to write."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a trained spacy-cmllm pipeline")
    parser.add_argument("data", type=Path, help="a .spacy file with gold entities and tags")
    parser.add_argument("--name", required=True, help="the entry's name in the results, e.g. ewt or conll03")
    parser.add_argument("--out", type=Path, default=results)
    return parser


def run_header(prog: str, argv: list[str] | None, args: argparse.Namespace) -> dict[str, Any]:
    """The first fields of an entry: the command that made it, its pipeline and data."""
    words = argv if argv is not None else sys.argv[1:]
    return {"command": f"{prog} " + " ".join(words), "model": str(args.model), "data": str(args.data)}


def save_entry(out: Path, name: str, entry: dict[str, Any], draw: Callable[[dict[str, Any], Path], None]) -> None:
    """Add (or replace) ``name`` in the results file ``out`` and redraw its PNG with ``draw``."""
    results = json.loads(out.read_text()) if out.exists() else {}
    results[name] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    draw(results, out.with_suffix(".png"))
