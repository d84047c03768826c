"""The sweep's report: mean ± std over seeds per configuration and budget, per-seed paired
differences against the causal decoder (0000), full unmasking (1111) and, for a variant,
the shipped config, with a 95 % t-interval of their mean; a bar plot and a time plot.

One way of scoring per summary (``scoring``): "gold" (the rule) or "text" (from raw text,
how every row of the sweep's CSVs was scored before the one harness, and every row since
with ``--text-scores``). A row without scores of that kind is left out.

A configuration is also kept apart by the machine its runs trained on: minutes are only
comparable on one kind of CPU, and seeds are only paired there. Several CSVs can be read
into one summary (e.g. the time plot of every configuration with three seeds), as long as no
run of a configuration on a machine appears in two of them.
"""

import itertools
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from .rows import read_rows
from .study import claims

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# The order of the paper's figure: unmasking grows from the input side, then shrinks from it.
PAPER_ORDER = ["0000", "1000", "1100", "1110", "1111", "0111", "0011", "0001"]
# The summary's names of the scores -> the row's columns, per way of scoring.
METRICS = {
    "gold": {
        "dev_f1": "dev_ner_f1",
        "test_f1": "test_ner_f1",
        "tag_acc": "test_tag_acc",
        "eval_seconds": "eval_seconds",
    },
    "text": {
        "dev_f1": "dev_ner_f1_text",
        "test_f1": "test_ner_f1_text",
        "tag_acc": "test_tag_acc_text",
        "eval_seconds": "eval_seconds_text",
    },
}
SCORINGS = tuple(METRICS)
SCORED_ON = {"gold": "on gold tokens", "text": "from raw text"}


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


def by_seed(rows: list[dict], column: str) -> dict[str, float]:
    """A column's filled values, keyed by seed: what paired differences and ratios pair."""
    return {r["seed"]: float(r[column]) for r in rows if r.get(column) not in ("", None)}


def mean_seconds(rows: list[dict], column: str) -> float | None:
    values = [float(r[column]) for r in rows if r.get(column) not in ("", None)]
    return round(statistics.mean(values), 1) if values else None


def group_key(row: dict) -> tuple:
    """A configuration, the machine it trained on and its budget: the rows of one mean."""
    budget = (row["max_steps"], row["batch_words"], row["dev_docs"], row["test_docs"])
    setting = (row["model"], row.get("head") or "parser", row["unmask"], row.get("overrides") or "")
    return setting + (row.get("cpu") or "",) + budget


def summarise(rows: list[dict]) -> dict:
    """Mean ± std per (model, head, unmask, overrides, machine, budget), and per-seed paired differences
    of each decoder configuration against "0000" (causal) and "1111" (fully unmasked) with the
    same overrides and budget, and of overridden runs against the shipped config ("shipped"),
    for test F1, dev F1 and tag accuracy, with a 95 % t-interval of their mean."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)

    def stats(values: list[float]) -> dict:
        return {
            "mean": round(statistics.mean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else None,
            "n": len(values),
        }

    def beside(row: dict, unmask: str, overrides: str) -> list[dict]:
        """The decoder's runs of another configuration at ``row``'s budget on its machine."""
        return groups.get(group_key({**row, "model": "smollm2", "unmask": unmask, "overrides": overrides}), [])

    configs = []
    for (model, head, unmask, overrides, _machine, *run_budget), members in sorted(groups.items()):
        entry = {
            "model": model,
            "head": head,
            "unmask": unmask,
            "overrides": overrides,
            "max_steps": int(run_budget[0]),
            "batch_words": int(run_budget[1]),
            "dev_docs": int(run_budget[2]),
            "test_docs": int(run_budget[3]),
            "seeds": sorted(int(r["seed"]) for r in members),
            "train_seconds": round(statistics.mean(float(r["train_seconds"]) for r in members), 1),
            "eval_seconds": mean_seconds(members, "eval_seconds"),
            "cpu": sorted({r.get("cpu") or "" for r in members} - {""}),
        }
        for metric in ("dev_f1", "test_f1", "tag_acc"):
            values = [float(r[metric]) for r in members if r[metric] != ""]
            entry[metric] = stats(values)
            entry[metric + "_values"] = values
        references = {"0000": ("0000", overrides), "1111": ("1111", overrides)}
        if overrides:
            references["shipped"] = (unmask, "")
        for (name, (ref_unmask, ref_overrides)), metric in itertools.product(
            references.items(), ("test_f1", "dev_f1", "tag_acc")
        ):
            if model != "smollm2" or (unmask, overrides) == (ref_unmask, ref_overrides):
                continue
            ref = by_seed(beside(members[0], ref_unmask, ref_overrides), metric)
            diffs = [value - ref[seed] for seed, value in by_seed(members, metric).items() if seed in ref]
            if diffs:
                ci95 = t_interval(diffs)
                entry[f"{metric}_vs_{name}"] = {
                    **stats(diffs),
                    "wins": sum(d > 0 for d in diffs),
                    "ci95": ci95,
                    # The study's rule, with the seeds' t-interval in place of its document
                    # bootstrap: these rows keep no per-document counts.
                    "verdict": claims.verdict({"per_seed": diffs, "ci": ci95}),
                }
        shipped = beside(members[0], unmask, "")
        if overrides and model == "smollm2" and shipped:
            # What a setting costs against the shipped config of the same spec (e.g. repeat=2
            # against one copy), from the mean times of their runs on the same kind of CPU.
            for kind in ("train", "eval"):
                ref_time = mean_seconds(shipped, f"{kind}_seconds")
                if ref_time and entry[f"{kind}_seconds"]:
                    entry[f"{kind}_time_vs_shipped"] = round(entry[f"{kind}_seconds"] / ref_time, 2)
                # Seed by seed as well: rows of one configuration may come from different
                # sessions, and a ratio of means then hides which pair ran on an idle CPU.
                ref_seconds = by_seed(shipped, f"{kind}_seconds")
                per_seed = {
                    seed: round(seconds / ref_seconds[seed], 2)
                    for seed, seconds in sorted(by_seed(members, f"{kind}_seconds").items())
                    if seed in ref_seconds
                }
                if per_seed:
                    entry[f"{kind}_time_vs_shipped_per_seed"] = per_seed
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
        ax.barh(
            ys,
            [e[metric]["mean"] for e in bars],
            xerr=[e[metric]["std"] or 0 for e in bars],
            color=["#999999" if e["unmask"] == "0000" else "#3b75af" for e in bars],
            capsize=3,
            label="SmolLM2-135M",
        )
        for y, e in zip(ys, bars):
            ax.scatter(e[metric + "_values"], [y] * len(e[metric + "_values"]), color="black", s=8, zorder=3)
            right = max(e[metric + "_values"] + [e[metric]["mean"] + (e[metric]["std"] or 0)])
            ax.annotate(
                f"{e[metric]['mean']:.2f} (n={e[metric]['n']})",
                (right, y),
                xytext=(4, -3),
                textcoords="offset points",
                fontsize=7,
            )
        for style, e in zip(
            ("--", ":", "-.", (0, (5, 1)), (0, (1, 3))), [e for e in entries if e["model"] != "smollm2"]
        ):
            ax.axvline(
                e[metric]["mean"], linestyle=style, color="#c44e52", label=f"{e['unmask']}, {e['max_steps']} steps"
            )
        ax.set_title(f"{metric.replace('_f1', '')} F1 (seqeval strict), mean ± std over seeds", fontsize=10)
        ax.set_xlabel("F1; grey = causal (0000)")
    names = [label(e) + (f"  {e['max_steps']}x{e['batch_words']}" if several else "") for e in bars]
    axes[0].set_yticks(ys, names, fontsize=8)
    if shown:
        axes[0].set_xlim(max(0.0, min(shown) - 5.0), min(100.0, max(shown) + 4.0))
    scored = (
        "full dev/test scored"
        if bars and bars[0]["test_docs"] == 0
        else f"first {bars[0]['test_docs'] if bars else '?'} dev/test documents scored"
    )
    budget = (
        "steps x words per batch after each name"
        if several
        else (f"{bars[0]['max_steps']} steps x {bars[0]['batch_words']} words" if bars else "")
    )
    fig.suptitle(
        f"LoRA on CoNLL-2003 ({scored}, {SCORED_ON[summary['scoring']]}); unmasked groups, leftmost = input side; "
        f"{budget}"
    )
    # One legend under both panels: inside an axis it covered the lowest bars.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels) or 1, fontsize=8, frameon=False)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    fig.savefig(path, dpi=120)


def plot_time(summary: dict, path: Path, min_seeds: int = 3) -> None:
    """Test F1 (mean ± std over seeds) against training minutes, one point per decoder
    configuration with at least ``min_seeds`` seeds; each point names its budget and its
    machine where the plot shows several."""
    import matplotlib.pyplot as plt

    fig = time_figure(summary, min_seeds)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def time_figure(summary: dict, min_seeds: int = 3) -> "Figure":
    """The time plot's figure, its names placed clear of each other and of the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [e for e in summary["configs"] if e["model"] == "smollm2" and e["test_f1"]["n"] >= min_seeds]
    cpus = sorted({c for e in points for c in e["cpu"]})
    budgets = {(e["max_steps"], e["batch_words"]) for e in points}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = []
    for e in sorted(points, key=lambda e: (-e["test_f1"]["mean"], e["train_seconds"])):
        minutes, f1, std = e["train_seconds"] / 60, e["test_f1"]["mean"], e["test_f1"]["std"] or 0
        ax.errorbar(
            [minutes], [f1], yerr=[std], fmt="o", capsize=3, color="#999999" if e["unmask"] == "0000" else "#3b75af"
        )
        name = label(e)
        if len(budgets) > 1:
            name += f" {e['max_steps']}x{e['batch_words']}"
        if len(cpus) > 1:
            name += f" ({', '.join(e['cpu'])})"
        text = ax.annotate(name, (minutes, f1), xytext=(5, -3), textcoords="offset points", fontsize=7)
        # Names stay inside the axes (place_names), so the layout need not make room for them.
        text.set_in_layout(False)
        names.append(((minutes, f1, std), text))
    ax.margins(x=0.35, y=0.15)
    ax.set_xlabel(f"training minutes (mean over seeds; {', '.join(cpus) or 'no'} CPU)")
    ax.set_ylabel("test F1 (seqeval strict), mean ± std")
    ax.set_title(
        f"CoNLL-2003, configurations with {min_seeds}+ seeds, scored {SCORED_ON.get(summary.get('scoring', ''), '')}"
        if points
        else f"no configuration has {min_seeds} seeds yet",
        fontsize=9,
    )
    fig.tight_layout()
    place_names(ax, names)
    return fig


def place_names(ax: "Axes", names: list) -> None:
    """Puts each point's name where it overlaps no name placed before it and no point or
    error bar: beside its point, else a line further up or down, on either side. Names are
    measured as drawn, because a long one reaches across other points."""
    from matplotlib.transforms import Bbox

    to_pixels = ax.transData.transform
    # A point's room in pixels: its marker and error bar's caps across, its bar and marker up and down.
    across, up = 6, 3
    marks = []
    for (x, y, std), _ in names:
        (left, bottom), (right, top) = to_pixels([(x, y - std), (x, y + std)])
        marks.append(Bbox([[left - across, bottom - up], [right + across, top + up]]))
    frame = ax.get_window_extent()
    middle = sum(ax.get_xlim()) / 2
    placed: list = []
    # Lines in points: beside the point first, then alternately above and below it.
    shifts = [0] + [sign * 10 * k for k in range(1, 8) for sign in (1, -1)]
    for i, ((x, y, _), text) in enumerate(names):
        others = placed + marks[:i] + marks[i + 1 :]
        sides = ("left", "right") if x > middle else ("right", "left")
        # Beside the point first (then on its line, no leader needed); else the first clear
        # place; else beside the point after all, as readable as it gets.
        tries = [(shift, side) for shift in shifts for side in sides] + [(0, "right")]
        for shift, side in tries:
            offset = (-5 if side == "left" else 5, shift - 3)
            text.set_position(offset)
            text.set_horizontalalignment("right" if side == "left" else "left")
            box = text.get_window_extent()
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in others):
                break
        if shift:  # a name off its point's line gets a leader to the point
            leader = ax.annotate(
                "",
                (x, y),
                xytext=(offset[0], shift),
                textcoords="offset points",
                arrowprops={"arrowstyle": "-", "color": "#bbbbbb", "lw": 0.6, "shrinkA": 0, "shrinkB": 4},
            )
            leader.set_in_layout(False)
        placed.append(box)


def machine(row: dict[str, str]) -> str:
    """What a run trained on: a GPU's name, else its CPU's capability."""
    return row["device"] if row.get("device") not in ("", "cpu", None) else row["cpu"]


def scored_rows(rows: list[dict[str, str]], scoring: str) -> list[dict[str, str]]:
    """The rows scored the ``scoring`` way, each with its scores under the summary's names
    and the machine it ran on as ``cpu``."""
    columns = METRICS[scoring]
    return [
        {
            **row,
            **{name: row[column] for name, column in columns.items()},
            "cpu": machine(row),
        }
        for row in rows
        if row[columns["test_f1"]] != ""
    ]


def rows_of(csvs: list[Path], scoring: str) -> list[dict[str, str]]:
    """The scored rows of several CSVs; a run (configuration, machine, budget, seed) found
    in two of them stops the report, as its mean would count that seed twice."""
    rows: list[dict[str, str]] = []
    seen: dict[tuple, Path] = {}
    for path in csvs:
        for row in scored_rows(read_rows(path), scoring):
            run = group_key(row) + (row["seed"],)
            if seen.get(run, path) != path:
                raise SystemExit(f"{path}: the run {run} is also in {seen[run]}; report them apart")
            seen[run] = path
            rows.append(row)
    return rows


def report(
    *,
    csv: Path | list[Path],
    scoring: str = "gold",
    summary: Path | None = None,
    plot_path: Path | None = None,
    time_plot: Path | None = None,
) -> int:
    """Print the table; write the summary JSON and the plots where asked."""
    csvs = [csv] if isinstance(csv, Path) else list(csv)
    rows = rows_of(csvs, scoring)
    if not rows:
        raise SystemExit(f"{', '.join(map(str, csvs))}: no finished runs scored the {scoring!r} way yet")
    result = {"scoring": scoring, **summarise(rows)}
    print(
        f"{'model':10} {'head':10} {'unmask':10} {'steps':>5} {'n':>2} {'dev F1':>13} {'test F1':>13} {'tag acc':>13} "
        f"{'vs 0000':>14} {'vs 1111':>14} {'vs shipped':>14}  {'machine':12} overrides"
    )
    for e in sorted(result["configs"], key=order_key):
        cells = [
            f"{e[m]['mean']:6.2f} ± {e[m]['std'] if e[m]['std'] is not None else '-':>4}"
            for m in ("dev_f1", "test_f1", "tag_acc")
        ]
        paired = [
            f"{e[k]['mean']:+6.2f} ({e[k]['wins']}/{e[k]['n']})" if k in e else ""
            for k in ("test_f1_vs_0000", "test_f1_vs_1111", "test_f1_vs_shipped")
        ]
        print(
            f"{e['model']:10} {e['head']:10} {e['unmask']:10} {e['max_steps']:>5} {e['test_f1']['n']:>2} {cells[0]:>13} {cells[1]:>13} "
            f"{cells[2]:>13} {paired[0]:>14} {paired[1]:>14} {paired[2]:>14}  {','.join(e['cpu']):12} "
            f"{e.get('overrides', '')}"
        )
    if summary:
        Path(summary).write_text(json.dumps(result, indent=2) + "\n")
    if plot_path:
        plot(result, Path(plot_path))
        print(f"plot: {plot_path}")
    if time_plot:
        plot_time(result, Path(time_plot))
        print(f"plot: {time_plot}")
    return 0
