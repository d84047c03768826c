"""Write the reference pages docs/configuration.md and docs/errors.md from the code.

    python scripts/docs_reference.py            # (re)write both pages
    python scripts/docs_reference.py --check    # exit 1 if a committed page is out of date

Run it after adding a registered function (setup.cfg entry point) or an error code.
"""

import argparse
import sys

from spacy_cmllm.reference import ROOT, stale_pages, write_pages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report pages that differ from what the code gives")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages()
        for name in stale:
            print(f"docs/{name} is out of date: run python scripts/docs_reference.py", file=sys.stderr)
        return 1 if stale else 0
    for path in write_pages():
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
