"""UPOS from the predicted PTB tag by learnt rules (the attribute_ruler of configs/default.cfg)
versus a second head trained on UPOS (a morphologizer beside the tagger).

1. Ceiling of the rules: learnt on train, applied to the GOLD tags of dev and test (tag
   majority alone, and with the (tag, word) exceptions).
2. The two on the same predicted features: spaCy's CPU tok2vec with a tagger and a UPOS
   morphologizer trained together for --steps steps on train; then dev and test pos_acc of
   the morphologizer's head, and of the rules applied to the tagger's predicted tags. The
   decoder pipeline is not used because training it twice takes far longer than this; the
   CNN shows the gap between the two ways on equal features.

    python -m benchmarks.pos_rules --corpus corpus/ewt [--steps 1000] [--note "shared CPU"]

The corpus directory holds train/dev/test.spacy with token.tag_ and token.pos_ (`spacy
project run convert-ewt` writes them to corpus/ewt). Writes benchmarks/results/pos_rules.json.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import spacy
from spacy.cli.init_config import init_config
from spacy.pipeline import AttributeRuler
from spacy.training import Corpus

from spacy_cmllm.pipeline.pos_rules import learn_pos_rules, read_docs, rules_to_patterns
from spacy_cmllm.provenance import provenance

from . import ROOT
from .pipelines import component_of

PROG = "python -m benchmarks.pos_rules"
RESULTS = ROOT / "benchmarks" / "results" / "pos_rules.json"
SPLITS = ("dev", "test")


def rules_on_gold_tags(corpus: Path, *, min_count: int) -> dict:
    """Accuracy of the rules on gold tags: the most the attribute_ruler can reach."""
    tag_map, exceptions = learn_pos_rules(read_docs(corpus / "train.spacy"), min_count=min_count)
    result: dict[str, object] = {"tags": len(tag_map), "exceptions": len(exceptions)}
    for split in SPLITS:
        tokens = [t for doc in read_docs(corpus / f"{split}.spacy") for t in doc if t.pos_]
        tag_only = sum(tag_map.get(t.tag_) == t.pos_ for t in tokens)
        with_words = sum(exceptions.get((t.tag_, t.text.lower()), tag_map.get(t.tag_)) == t.pos_ for t in tokens)
        result[split] = {
            "tokens": len(tokens),
            "tag_only": tag_only / len(tokens),
            "with_exceptions": with_words / len(tokens),
        }
    return result


def train_cnn(corpus: Path, out: Path, *, steps: int) -> Path:
    """spaCy's CPU tok2vec + tagger + morphologizer (UPOS), trained together."""
    from spacy.cli.train import train

    config = init_config(lang="en", pipeline=["tagger", "morphologizer"], optimize="efficiency")
    path = out / "cnn.cfg"
    config.to_disk(path)
    overrides = {
        "paths.train": str(corpus / "train.spacy"),
        "paths.dev": str(corpus / "dev.spacy"),
        "training.max_steps": steps,
        "training.eval_frequency": max(1, steps // 4),
        "training.logger.progress_bar": False,
        "system.seed": 0,
    }
    train(path, out / "cnn", use_gpu=-1, overrides=overrides)
    return out / "cnn" / "model-last"


def head_versus_rules(corpus: Path, pipeline: Path, *, min_count: int) -> dict:
    patterns = rules_to_patterns(learn_pos_rules(read_docs(corpus / "train.spacy"), min_count=min_count))
    head = spacy.load(pipeline)
    rules = spacy.load(pipeline, exclude=["morphologizer"])
    rules.add_pipe("attribute_ruler", after="tagger")
    component_of(rules, "attribute_ruler", AttributeRuler).add_patterns(patterns)
    result = {}
    for split in SPLITS:
        by_head = head.evaluate(list(Corpus(str(corpus / f"{split}.spacy"))(head)))
        by_rules = rules.evaluate(list(Corpus(str(corpus / f"{split}.spacy"))(rules)))
        result[split] = {
            "tag_acc": by_head["tag_acc"],
            "pos_acc_head": by_head["pos_acc"],
            "pos_acc_rules": by_rules["pos_acc"],
            "rules_minus_head": by_rules["pos_acc"] - by_head["pos_acc"],
        }
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus" / "ewt")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--min-count", type=int, default=1, help="as configs/default.cfg")
    parser.add_argument("--note", default="", help="e.g. that the CPU was shared with other jobs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        pipeline = train_cnn(args.corpus, Path(work), steps=args.steps)
        compared = head_versus_rules(args.corpus, pipeline, min_count=args.min_count)
    report = {
        "command": f"{PROG} " + " ".join(argv if argv is not None else sys.argv[1:]),
        **provenance(),
        "note": args.note,
        "corpus": str(args.corpus),
        "min_count": args.min_count,
        "rules_on_gold_tags": rules_on_gold_tags(args.corpus, min_count=args.min_count),
        "cnn_steps": args.steps,
        "cnn_head_versus_rules": compared,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
