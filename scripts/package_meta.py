#!/usr/bin/env python
"""Write the meta.json for `spacy package --meta-path`: the trained pipeline's meta with the
requirements it needs to load (spacy-cmllm, the package of a ``package:`` base decoder),
a description, author and licence.

Usage::

    python scripts/package_meta.py PIPELINE_DIR OUTPUT.json --license "CC BY-SA 4.0" \\
        --author NAME [--data "what it was trained on"] [--description TEXT] [--email E] [--url U]
"""

import argparse
import sys
from pathlib import Path

import srsly

from spacy_cmllm.packaging import pipeline_meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path, help="trained pipeline directory, e.g. training/ewt/model-best")
    parser.add_argument("output", type=Path, help="where to write the meta.json")
    parser.add_argument("--license", required=True)
    parser.add_argument("--author", required=True)
    parser.add_argument("--data", default=None, help="the training data, appended to the generated description")
    parser.add_argument("--description", default=None, help="replaces the generated description")
    parser.add_argument("--email", default="")
    parser.add_argument("--url", default="")
    args = parser.parse_args(argv)
    meta = pipeline_meta(
        args.pipeline,
        license=args.license,
        author=args.author,
        data=args.data,
        description=args.description,
        email=args.email,
        url=args.url,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(args.output, meta)
    print(f"{args.output}: requirements {meta['requirements']}; license {meta['license']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
