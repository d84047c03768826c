"""The layer-wise study on Ray Tune: screen unmask configurations with successive halving,
train the finalists with several seeds, score them on the full test sets
(experiments/study/).

    python -m scripts.study run CORPUS_DIR [--unmask all] [--seeds 0,1,2] [--epochs 1.0]
        [--evals-per-epoch 4] [--grace-epochs 0.5] [--finalists 2] [--mirrors 1100] [--baselines spacy-cnn]
        [--address ray://host:10001] [--stop-after N]
    python -m scripts.study report [--resamples 2000]
    python -m scripts.study status

Run from the repository root (the harness, experiments/, is no installed package).

One trial = one multi-task `spacy train` of configs/study.cfg (POS tagger, NER bio_tagger,
chunking bio_tagger on one shared decoder) as a Ray Tune trial with its own resources (all
local CPUs, one trial at a time by default; one GPU per trial where the cluster has GPUs),
then scored on the full dev and test sets on their gold tokens. spaCy's evaluation loop
reports full-dev scores to Tune through the logger spacy-cmllm.TuneLogger.v1.

Every trial that ends, finished or pruned, is appended to --ledger (JSONL: run, status, dev
scores, train time, CPU, the per-document counts), and the scheduler keeps its rungs in
--rungs. Both are small and meant to be committed with the results: the same command in a
fresh checkout trains only the runs the ledger lacks. Interrupted (Ctrl+C, a lost machine,
--stop-after): run the same command again.
"""

import argparse
import sys
from pathlib import Path

from experiments import spec
from experiments.runs import BASE_MODEL
from experiments.study import report, run

RESULTS = "benchmarks/results/conll03_study"


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument(
        "corpus", type=Path, help="directory with train.spacy, dev.spacy, test.spacy (scripts/prepare_conll03.py)"
    )
    go.add_argument(
        "--unmask", default="all", help="'all' (2^4 configurations) or a comma list; 0000 and 1111 always run"
    )
    go.add_argument("--seeds", default="0,1,2", help="the finalists' seeds; the first one is the screening seed")
    go.add_argument("--epochs", type=float, default=1.0, help="the full budget, in epochs")
    go.add_argument("--steps", type=int, default=0, help="the full budget in steps (0: from --epochs)")
    go.add_argument("--batch-words", type=int, default=1000)
    go.add_argument(
        "--evals-per-epoch", type=float, default=4, help="full-dev evaluations per epoch (one ASHA round each)"
    )
    go.add_argument("--grace-epochs", type=float, default=0.5, help="no pruning before this much training")
    go.add_argument("--reduction-factor", type=float, default=2)
    go.add_argument("--finalists", type=int, default=2, help="best non-anchor configurations taken to all seeds")
    go.add_argument(
        "--mirrors",
        default="",
        help="configurations trained at every seed after the screen, whatever it said "
        "(e.g. 1100, the input-side mirror of 0011, for the output-side claim)",
    )
    go.add_argument("--baselines", default="spacy-cnn")
    go.add_argument("--baseline-epochs", type=float, default=10, help="at most this much training for a baseline")
    go.add_argument(
        "--baseline-steps", type=int, default=0, help="a baseline's budget in steps (0: from --baseline-epochs)"
    )
    go.add_argument(
        "--baseline-patience",
        type=int,
        default=4,
        help="stop a baseline after this many evaluations without improvement",
    )
    go.add_argument("--base-model", default=BASE_MODEL)
    go.add_argument(
        "--text-scores",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also score from raw text, as `spacy evaluate` does (the *_text columns)",
    )
    go.add_argument("--address", default=None, help="a Ray cluster (ray://host:10001 or auto); default: local Ray")
    go.add_argument("--cpus", type=int, default=0, help="CPUs of the local Ray (default: all)")
    go.add_argument("--cpus-per-trial", type=int, default=0, help="default: all local CPUs; 4 on a cluster")
    go.add_argument(
        "--gpus-per-trial",
        type=int,
        default=None,
        help="0 keeps trials off GPUs; default: 1 where the cluster has GPUs",
    )
    go.add_argument(
        "--concurrent",
        type=int,
        default=0,
        help="trials at a time (default: 1 locally, as CPUs and GPUs allow on a cluster)",
    )
    go.add_argument(
        "--stop-after", type=int, default=0, help="stop (resumably) after N trials finish in this invocation"
    )
    go.add_argument(
        "--work", type=Path, default=Path("training/study"), help="trial pipelines and Tune's state (keep it to resume)"
    )
    go.add_argument("--csv", type=Path, default=Path(f"{RESULTS}.csv"))
    go.add_argument(
        "--counts", type=Path, default=Path(f"{RESULTS}_counts.jsonl"), help="per-document counts of every scored run"
    )
    go.add_argument("--screening", type=Path, default=Path(f"{RESULTS}_screening.json"))
    go.add_argument(
        "--ledger",
        type=Path,
        default=Path(f"{RESULTS}_trials.jsonl"),
        help="every trial that ended (commit it: a study continues from it)",
    )
    go.add_argument(
        "--rungs",
        type=Path,
        default=Path(f"{RESULTS}_rungs.json"),
        help="the scheduler's rungs (commit it with the ledger)",
    )
    rep = sub.add_parser("report")
    rep.add_argument("--csv", type=Path, default=Path(f"{RESULTS}.csv"))
    rep.add_argument("--counts", type=Path, default=Path(f"{RESULTS}_counts.jsonl"))
    rep.add_argument("--screening", type=Path, default=Path(f"{RESULTS}_screening.json"))
    rep.add_argument("--summary", type=Path, default=Path(f"{RESULTS}_summary.json"))
    rep.add_argument("--plot", type=Path, default=Path(f"{RESULTS}.png"))
    rep.add_argument("--resamples", type=int, default=2000)
    rep.add_argument("--bootstrap-seed", type=int, default=0)
    stat = sub.add_parser("status", help="the trials that ended so far, from the ledger")
    stat.add_argument("--ledger", type=Path, default=Path(f"{RESULTS}_trials.jsonl"))
    stat.add_argument("--rungs", type=Path, default=Path(f"{RESULTS}_rungs.json"))
    args = parser.parse_args(argv)
    if args.command == "report":
        return report.report(
            csv=args.csv,
            counts=args.counts,
            screening=args.screening,
            summary_path=args.summary,
            plot_path=args.plot,
            resamples=args.resamples,
            bootstrap_seed=args.bootstrap_seed,
        )
    if args.command == "status":
        return report.status(ledger=args.ledger, rungs=args.rungs)
    return run.run_study(
        corpus=args.corpus,
        specs=spec.parse_unmask(args.unmask),
        seeds=spec.parse_seeds(args.seeds),
        mirrors=spec.parse_groups(args.mirrors, option="--mirrors"),
        baselines=spec.parse_names(args.baselines, run.BASELINES, "--baselines"),
        budget_options={
            "epochs": args.epochs,
            "evals_per_epoch": args.evals_per_epoch,
            "grace_epochs": args.grace_epochs,
            "steps": args.steps,
            "batch_words": args.batch_words,
            "baseline_epochs": args.baseline_epochs,
            "baseline_steps": args.baseline_steps,
        },
        reduction_factor=args.reduction_factor,
        finalists=args.finalists,
        baseline_patience=args.baseline_patience,
        base_model=args.base_model,
        text_scores=args.text_scores,
        ray_options={
            "address": args.address,
            "cpus": args.cpus,
            "cpus_per_trial": args.cpus_per_trial,
            "gpus_per_trial": args.gpus_per_trial,
            "concurrent": args.concurrent,
        },
        stop_after=args.stop_after,
        work=args.work,
        csv=args.csv,
        counts=args.counts,
        screening=args.screening,
        ledger=args.ledger,
        rungs=args.rungs,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
