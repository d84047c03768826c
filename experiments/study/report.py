"""The study's report: test scores per configuration with 95 % bootstrap intervals over
test documents, paired differences against the anchors, the claims, a plot; and where a
study stands, from its ledger alone.

Test scores come from the per-document counts (gold tokens, the rule). A configuration's
dev NER F1 is its rows' ``dev_ner_f1`` (gold tokens); rows written before the one harness
have none for a decoder, whose dev score was the last evaluation of spaCy's training loop
(``dev_ner_f1_training``), and then that is the entry's, as ``dev_scored_on`` says.
"""

import json
import statistics
from pathlib import Path
from typing import Any

from ..rows import pct, read_counts, read_rows, row_key
from ..scoring import TASKS, tasks_of
from . import bootstrap, claims
from .run import ANCHORS


def dev_f1_mean(members: list[dict[str, str]]) -> dict[str, Any]:
    """The mean dev NER F1 of a configuration's rows, and what it was scored on."""
    for column, scored_on in (("dev_ner_f1", "gold tokens"), ("dev_ner_f1_training", "training loop")):
        if all(r[column] != "" for r in members):
            return {
                "dev_f1_mean": round(statistics.mean(float(r[column]) for r in members), 2),
                "dev_scored_on": scored_on,
            }
    return {
        "dev_f1_mean": round(statistics.mean(float(r["dev_ner_f1"] or r["dev_ner_f1_training"]) for r in members), 2),
        "dev_scored_on": "mixed",
    }


def summarise(
    rows: list[dict[str, str]],
    counts: dict[tuple, dict[str, Any]],
    *,
    n_resamples: int,
    seed: int,
    screening: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary JSON: per configuration (and baseline) with test scores, mean ± std over
    seeds, 95 % bootstrap intervals over test documents, paired differences against the anchors."""
    import numpy

    scored = [r for r in rows if r.get("test_ner_f1") not in ("", None) and row_key(r) in counts]
    n_docs = {len(counts[row_key(r)]["test"]["ner"]) for r in scored}
    if len(n_docs) > 1:
        raise SystemExit(
            f"runs were scored on different test sets ({sorted(n_docs)} documents); the bootstrap needs one"
        )
    weights = bootstrap.resample_weights(n_docs.pop(), n_resamples, seed) if scored else None
    tasks = [t for t in TASKS if scored and all(counts[row_key(r)]["test"].get(t) for r in scored)]
    groups: dict[tuple, list[dict[str, str]]] = {}
    for r in scored:
        groups.setdefault((r["model"], r["unmask"], r["max_steps"], r["batch_words"]), []).append(r)

    def per_seed(members, task):
        return {int(r["seed"]): numpy.asarray(counts[row_key(r)]["test"][task]) for r in members}

    def entry(members, decoder):
        out: dict[str, Any] = {
            "seeds": len(members),
            "seed_list": sorted(int(r["seed"]) for r in members),
            "epochs": round(statistics.mean(float(r["epochs"] or 0) for r in members), 2),
            "budget_steps": int(members[0]["max_steps"]),
            "train_seconds": round(statistics.mean(float(r["train_seconds"]) for r in members), 1),
            "cpu_capability": sorted({r["cpu"] for r in members}),
            "device": sorted({r["device"] for r in members}),
            **dev_f1_mean(members),
        }
        for task in tasks:
            kind = "acc" if task == "pos" else "f1"
            if task not in tasks_of(members[0]["config"]):
                continue
            runs = per_seed(members, task)
            values = [100 * float(bootstrap.score(v.sum(axis=0), kind)) for v in runs.values()]
            assert weights is not None  # tasks is empty when nothing was scored
            lo, hi = bootstrap.mean_interval(list(runs.values()), weights, kind)
            stats = {
                f"test_{kind}_mean": round(statistics.mean(values), 2),
                f"test_{kind}_std": round(statistics.stdev(values), 2) if len(values) > 1 else None,
                f"test_{kind}_ci": [round(100 * lo, 2), round(100 * hi, 2)],
                f"test_{kind}_values": [round(v, 2) for v in values],
            }
            if task == "ner":
                out.update(stats)
            else:
                out[task] = stats
            if decoder:
                for ref in ANCHORS:
                    if members[0]["unmask"] == ref or ref not in decoders:
                        continue
                    diff = paired(members, decoders[ref], task)
                    if diff:
                        (out if task == "ner" else out[task])[f"vs_{ref}"] = diff
        return out

    def paired(members, ref_members, task):
        """Paired differences in percentage points (None where no seed is shared)."""
        kind = "acc" if task == "pos" else "f1"
        assert weights is not None  # tasks is empty when nothing was scored
        diff = bootstrap.paired_difference(per_seed(members, task), per_seed(ref_members, task), weights, kind)
        if diff:
            diff = {
                **diff,
                "per_seed": [round(100 * d, 2) for d in diff["per_seed"]],
                "mean": round(100 * diff["mean"], 2),
                "ci": [round(100 * c, 2) for c in diff["ci"]],
            }
        return diff

    # Decoder configurations are compared with each other (anchors, claims): trained alike,
    # at one budget and one batch size.
    decoders: dict[str, list[dict[str, str]]] = {}
    baselines = {}
    for (model, unmask, *_), members in sorted(groups.items()):
        if model != "smollm2":
            baselines[model] = entry(members, False)
        elif decoders.setdefault(unmask, members) is not members:
            raise SystemExit(f"{unmask} was trained at more than one budget or batch size; the comparisons need one")
    configs = {unmask: entry(members, True) for unmask, members in decoders.items()}
    summary = {
        "test_full": True,
        "tasks": tasks,
        "metric": "seqeval strict IOB2 micro F1 (NER, chunks); POS accuracy",
        "bootstrap": {"over": "test documents", "resamples": n_resamples, "seed": seed, "level": 0.95},
        "test_docs": len(next(iter(counts.values()))["test"]["ner"]) if scored else 0,
        "configs": configs,
        "baselines": baselines,
    }
    summary["claims"] = claims.judge(
        sorted(decoders), lambda run, ref, task: paired(decoders[run], decoders[ref], task), tasks, screening=screening
    )
    if screening:
        summary["screening"] = screening
    return summary


def plot(summary: dict[str, Any], path: Path) -> None:
    """Per task: each configuration's mean test score over seeds with its 95 % bootstrap
    interval, seeds as dots; baselines as horizontal lines with their intervals shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = summary["tasks"]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 4.5))
    axes = [axes] if len(tasks) <= 1 else list(axes)
    names = list(summary["configs"])
    for ax, task in zip(axes, tasks):
        kind = "acc" if task == "pos" else "f1"
        for x, name in enumerate(names):
            e = summary["configs"][name] if task == "ner" else summary["configs"][name][task]
            mean, (lo, hi) = e[f"test_{kind}_mean"], e[f"test_{kind}_ci"]
            ax.errorbar(
                [x],
                [mean],
                yerr=[[mean - lo], [hi - mean]],
                fmt="o",
                capsize=4,
                color="#999999" if name == "0000" else "#3b75af",
            )
            ax.scatter([x] * len(e[f"test_{kind}_values"]), e[f"test_{kind}_values"], s=8, color="black", zorder=3)
        for name, b in summary["baselines"].items():
            e = b if task == "ner" else b.get(task)
            if e:
                ax.axhline(e[f"test_{kind}_mean"], linestyle="--", color="#c44e52", label=name)
                ax.axhspan(*e[f"test_{kind}_ci"], color="#c44e52", alpha=0.12)
        ax.set_xticks(range(len(names)), names, rotation=45)
        ax.set_title(f"{task}: test {'accuracy' if kind == 'acc' else 'F1'}, mean over seeds, 95 % CI")
        ax.set_xlabel("unmasked groups (leftmost = input side)")
        if ax.get_legend_handles_labels()[0]:  # a task no baseline has (the CNN's chunking): no empty box
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"CoNLL-2003, full test set ({summary['test_docs']} documents); intervals: bootstrap over documents")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(
    *,
    csv: Path,
    counts: Path,
    screening: Path | None,
    summary_path: Path,
    plot_path: Path | None,
    resamples: int,
    bootstrap_seed: int,
) -> int:
    """Print the table and the claims; write the summary JSON and the plot."""
    rows = read_rows(csv)
    if not rows:
        raise SystemExit(f"{csv}: no finished trials yet; run `python -m scripts.study run` first")
    screened = json.loads(Path(screening).read_text()) if screening and Path(screening).exists() else None
    summary = summarise(rows, read_counts(counts), n_resamples=resamples, seed=bootstrap_seed, screening=screened)
    print(f"{'config':10} {'n':>2} {'dev NER':>8} {'test NER [95% CI]':>24} {'vs 0000':>22} {'vs 1111':>22}")
    for name, e in list(summary["configs"].items()) + list(summary["baselines"].items()):
        if "test_f1_mean" not in e:
            continue
        paired = [
            f"{e[k]['mean']:+6.2f} [{e[k]['ci'][0]:+.2f},{e[k]['ci'][1]:+.2f}]" if k in e else ""
            for k in ("vs_0000", "vs_1111")
        ]
        print(
            f"{name:10} {e['seeds']:>2} {e['dev_f1_mean']:8.2f} {e['test_f1_mean']:8.2f} "
            f"[{e['test_f1_ci'][0]:.2f}, {e['test_f1_ci'][1]:.2f}] {paired[0]:>22} {paired[1]:>22}"
        )
    print(f"claims ({summary['claims']['rule']}):")
    for name, claim in summary["claims"].items():
        if not isinstance(claim, dict):  # the rule and min_seeds
            continue
        print(f"  {name}: " + "; ".join(f"{task} {claim[task]['verdict']}" for task in summary["tasks"]))
        for c in claim["ner"]["comparisons"] if "ner" in claim else []:
            interval = f"{c['mean']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]" if c["ci"] else "no shared seed"
            print(f"    NER {c['run']} vs {c['reference']}: {interval}, {c['seeds']} seed(s): {c['verdict']}")
    Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary_path).write_text(json.dumps(summary, indent=1) + "\n")
    if plot_path and summary["configs"]:
        plot(summary, Path(plot_path))
        print(f"plot: {plot_path}")
    return 0


def status(*, ledger: Path, rungs: Path) -> int:
    """Where a study stands, from its ledger and rungs alone (no Ray, no trained pipelines):
    one line per trial that ended, then the rungs' cutoffs. Dev scores only: test scores are
    read for finalists, by `report`."""
    import numpy

    path = Path(ledger)
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    if not entries:
        print(f"{path}: no trial has ended yet")
        return 0
    print(
        f"{'phase':6} {'model':9} {'unmask':6} {'seed':>4} {'status':8} {'rounds':>6} {'dev NER':>8} "
        f"{'chunks':>7} {'POS':>6} {'train min':>9} cpu"
    )
    for e in entries:
        m, r = e["metrics"], e["record"] or {}
        print(
            f"{e['phase']:6} {e['run']['model']:9} {e['run']['unmask']:6} {e['run']['seed']:>4} {e['status']:8} "
            f"{e['eval_round'] if e['eval_round'] is not None else '':>6} {pct(m.get('ents_f')):>8} "
            f"{pct(m.get('spans_chunks_f')):>7} {pct(m.get('tag_acc')):>6} "
            f"{round(r['train_seconds'] / 60, 1) if r else '':>9} {r.get('cpu_capability', '')}"
        )
    rungs_path = Path(rungs)
    if rungs_path.exists():
        saved = json.loads(rungs_path.read_text())
        for milestone in sorted((k for k in saved if k.isdigit()), key=int):
            values = list(saved[milestone].values())
            cut = numpy.percentile(values, 50) if values else float("nan")
            print(f"rung at round {milestone}: {len(values)} trial(s), median dev NER F1 {100 * cut:.2f}")
    return 0
