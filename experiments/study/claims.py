"""The paper's three claims, judged from the study's paired test differences (RULE).

The document resamples cover the test set's sampling, the seeds the training's: a
difference has to survive both, and one seed says nothing about the second.
"""

from collections.abc import Callable, Sequence
from typing import Any

HELD, NOT_HELD, CANNOT_TELL, MIXED = "held", "not held", "cannot tell", "mixed"
MIN_SEEDS = 3
RULE = (
    "A comparison (a configuration against a reference, seed by seed on the same test documents) is "
    "'held' where the 95 % bootstrap interval of the mean difference lies above zero and every seed's "
    "difference on the full test set is positive; 'not held' where both lie below zero (the reference is "
    "better); 'cannot tell' otherwise, and always with fewer than {min_seeds} shared seeds."
)

CLAIMS = {
    "unmasking_helps": "removing the causal mask (in some groups of layers or all) beats the causal decoder 0000",
    "layerwise_beats_full": "removing it in chosen groups of layers beats removing it in all of them (1111)",
    "output_side_matters_most": "removing it in output-side groups beats removing it in their input-side mirror",
}

# diff(run, reference, task): the paired difference as bootstrap.paired_difference gives
# it, in percentage points; None where the two share no scored seed.
Diff = Callable[[str, str, str], dict[str, Any] | None]


def verdict(diff: dict[str, Any] | None, min_seeds: int = MIN_SEEDS) -> str:
    if diff is None or len(diff["per_seed"]) < min_seeds:
        return CANNOT_TELL
    lo, hi = diff["ci"]
    if lo > 0 and all(d > 0 for d in diff["per_seed"]):
        return HELD
    if hi < 0 and all(d < 0 for d in diff["per_seed"]):
        return NOT_HELD
    return CANNOT_TELL


def overall(verdicts: Sequence[str]) -> str:
    """One word for a claim's comparisons: theirs where they agree, else "mixed"."""
    if not verdicts:
        return CANNOT_TELL
    return verdicts[0] if len(set(verdicts)) == 1 else MIXED


def mirror(unmask: str) -> str:
    """The same groups counted from the other end: 0011 <-> 1100."""
    return unmask[::-1]


def output_side(unmask: str) -> bool:
    """More unmasked groups in the output-side half than in the input-side half (the
    leftmost character is the input side; a middle group of an odd count is neither)."""
    half = len(unmask) // 2
    return unmask[len(unmask) - half :].count("1") > unmask[:half].count("1")


def comparisons(configs: Sequence[str]) -> dict[str, list[tuple]]:
    """Per claim, the (run, reference) pairs that the scored configurations allow."""
    unmasked = [c for c in configs if "1" in c]
    return {
        "unmasking_helps": [(c, "0" * len(c)) for c in unmasked if "0" * len(c) in configs],
        "layerwise_beats_full": [(c, "1" * len(c)) for c in unmasked if "0" in c and "1" * len(c) in configs],
        "output_side_matters_most": [(c, mirror(c)) for c in configs if output_side(c) and mirror(c) in configs],
    }


def judge(
    configs: Sequence[str],
    diff: Diff,
    tasks: Sequence[str],
    *,
    min_seeds: int = MIN_SEEDS,
    screening: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per claim and task: each comparison with its interval and verdict, and the claim's
    overall verdict. For the output-side claim, the screen's dev scores of mirror pairs are
    listed beside it as what they are: one seed, dev, part of a budget — never a verdict."""
    out: dict[str, Any] = {"rule": RULE.format(min_seeds=min_seeds), "min_seeds": min_seeds}
    for claim, pairs in comparisons(configs).items():
        entry: dict[str, Any] = {"claim": CLAIMS[claim]}
        for task in tasks:
            rows = []
            for run, reference in pairs:
                d = diff(run, reference, task)
                rows.append(
                    {
                        "run": run,
                        "reference": reference,
                        "seeds": len(d["per_seed"]) if d else 0,
                        "mean": d["mean"] if d else None,
                        "ci": d["ci"] if d else None,
                        "per_seed": d["per_seed"] if d else [],
                        "verdict": verdict(d, min_seeds),
                    }
                )
            entry[task] = {"verdict": overall([r["verdict"] for r in rows]), "comparisons": rows}
        if not pairs:
            entry["why"] = "no scored configuration has its reference scored at the same seeds"
        if claim == "output_side_matters_most" and screening:
            trials = screening.get("trials", {})
            entry["screening"] = {
                c: {
                    "dev_ner_f1": trials[c].get("dev_ner_f1"),
                    "status": trials[c].get("status"),
                    "mirror": mirror(c),
                    "mirror_dev_ner_f1": trials[mirror(c)].get("dev_ner_f1"),
                    "mirror_status": trials[mirror(c)].get("status"),
                }
                for c in trials
                if output_side(c) and mirror(c) in trials
            }
        out[claim] = entry
    return out
