"""The GPU check's report: each stage's record (rewritten at every update, so that a stage
killed at its time limit still leaves what it had measured), the verdict, and the plot."""

import json
import os
from pathlib import Path
from typing import Any


class StageRecord:
    """A stage's result, rewritten to its file at every update: a stage killed at its time
    limit still leaves what it had measured."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {"ok": False}

    def update(self, **values: Any) -> None:
        self.data.update(values)
        write_json(self.path, self.data)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check_passed(check: dict[str, Any]) -> bool:
    return check.get("ok") is True or bool(check.get("skipped"))


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Set report["passed"] and report["failed"] from its checks."""
    failed = [name for name, check in report["checks"].items() if not check_passed(check)]
    report["failed"] = failed
    report["passed"] = bool(report["checks"]) and not failed
    return report


def exit_code(report: dict[str, Any]) -> int:
    return 0 if report.get("passed") else 1


def describe(name: str, check: dict[str, Any]) -> str:
    state = "skipped" if check.get("skipped") else ("ok" if check.get("ok") is True else "FAILED")
    detail = check.get("summary") or ""
    if check.get("error") and state != "ok":
        detail = (detail + "; " if detail else "") + str(check["error"]).splitlines()[0][:300]
    return f"{name:10} {state:8} {check.get('seconds', 0):6.1f} s  {detail}"


def plot(report: dict[str, Any], path: Path) -> None:
    """Each stage's seconds against its limit (red: failed), and the speed stage's
    throughputs on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = report["checks"]
    speed = checks.get("speed", {})
    rates = {f"{name.replace('_', ' ')} (words/s)": value for name, value in speed.get("words_per_s", {}).items()}
    rates.update(
        {f"{name.replace('_', ' ')} (pieces/s)": value for name, value in speed.get("pieces_per_s", {}).items()}
    )
    fig, axes = plt.subplots(1, 2 if rates else 1, figsize=(11 if rates else 5.5, 3.2), squeeze=False)
    stages = axes[0][0]
    names = list(checks)
    stages.barh(
        names,
        [checks[n].get("seconds", 0.0) for n in names],
        color=["#4c72b0" if check_passed(checks[n]) else "#c44e52" for n in names],
    )
    for i, name in enumerate(names):
        if checks[name].get("limit_seconds"):
            stages.plot([checks[name]["limit_seconds"]] * 2, [i - 0.4, i + 0.4], color="black", lw=1.5)
    stages.invert_yaxis()
    stages.set_xlabel("seconds (black: the stage's limit; red: failed)")
    where = report["environment"].get("gpu") or report["mode"]
    stages.set_title(f"gpu_check on {where}: {'passed' if report.get('passed') else 'failed'}", fontsize=9)
    if rates:
        times = axes[0][1]
        times.barh(list(rates), list(rates.values()), color="#3b75af")
        for i, value in enumerate(rates.values()):
            times.text(value, i, f" {value:,.0f}", va="center", fontsize=7)
        times.invert_yaxis()
        times.set_xscale("log")
        times.set_xlabel("speed stage throughput (log scale)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
