"""spacy-cmllm.TuneLogger.v1 is the study's, not the package's: a process that imports the
study's trainable (a Tune trial) can resolve it, a process with the package alone cannot,
and neither imports Ray until a trial's logger is set up."""

import subprocess
import sys

from tests.scripts import ROOT

PROBE = """
import sys
from spacy.util import registry
import catalogue

def resolves():
    try:
        registry.loggers.get("spacy-cmllm.TuneLogger.v1")
        return True
    except catalogue.RegistryError:
        return False

before = resolves()
import experiments.study.tune
print(before, resolves(), "ray" in sys.modules)
"""


def test_the_trial_process_registers_the_tune_logger_without_importing_ray():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False", "True", "False"]


def test_a_trials_config_resolves_the_logger():
    from spacy.util import registry
    from thinc.api import Config

    from experiments.study.tune import LOGGER

    config = Config(
        {
            "logger": {
                "@loggers": LOGGER["training.logger.@loggers"],
                "console": False,
                "progress_bar": LOGGER["training.logger.progress_bar"],
            }
        }
    )
    setup = registry.resolve(config)["logger"]
    assert callable(setup) and setup.__module__ == "experiments.study.logger"
