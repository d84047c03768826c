"""spacy-cmllm.ConsoleLogger.v1: spaCy's table, plus plain progress lines off a terminal and
a note on the warm-up behind "Initial learn rate: 0.0"."""

import io
import sys
from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.util import load_config, load_model_from_config, registry

from spacy_cmllm.pipeline.console_logger import learn_rate_notes, progress_line
from tests.processes import run_process_tree
from tests.tiny import save_tiny_decoder, train_examples

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "configs" / "default.cfg"


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def nlp():
    # Weights load at initialize: building the pipeline reads no model.
    return load_model_from_config(load_config(CONFIG), auto_fill=True)


def run_logger(nlp, stream, steps, progress_every=10):
    setup = registry.loggers.get("spacy-cmllm.ConsoleLogger.v1")(progress_every=progress_every)
    log_step, finalize = setup(nlp, stream, io.StringIO())
    info = {
        "epoch": 0,
        "step": 0,
        "score": 0.0,
        "other_scores": {},
        "losses": {"transformer": 0.0, "tagger": 1.0, "ner": 2.0},
    }
    log_step(info)
    for _ in range(steps - 1):
        log_step(None)
    finalize()
    return stream.getvalue()


def test_plain_progress_lines_when_not_a_terminal(nlp):
    out = run_logger(nlp, io.StringIO(), steps=25)
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split(" (")[0] for line in lines] == ["step 10/400", "step 20/400"]
    assert "left" in lines[0]
    # spaCy's table is still there.
    assert "TAG_ACC" in out and "ENTS_F" in out


def test_no_plain_lines_on_a_terminal(nlp):
    out = run_logger(nlp, Terminal(), steps=25)
    assert not [line for line in out.splitlines() if line.startswith("step ")]


def test_warm_up_from_zero_is_explained(nlp):
    out = " ".join(run_logger(nlp, Terminal(), steps=1).split())  # wasabi wraps lines
    assert "initial learn rate 0.0 is the start of the heads' linear warm-up" in out
    assert "rises to 0.001 over 20 steps" in out
    notes = learn_rate_notes(load_config(CONFIG, interpolate=True))
    assert len(notes) == 2 and "adapters" in notes[1]


def test_progress_line_without_max_steps():
    assert progress_line(30, 0, 65.0) == "step 30, 1m05s elapsed"
    assert progress_line(10, 40, 20.0) == "step 10/40 (25 %), 20s elapsed, about 1m00s left"


def test_bad_progress_every_is_refused():
    with pytest.raises(ValueError, match="E040.*progress_every"):
        registry.loggers.get("spacy-cmllm.ConsoleLogger.v1")(progress_every=-1)


@pytest.mark.slow
def test_spacy_train_shows_progress_in_a_log(tmp_path, byte_level_tokenizer):
    """`spacy train` with its output in a pipe, as `spacy project run all` in a log or CI."""
    tiny = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=4)
    nlp = load_model_from_config(load_config(CONFIG), auto_fill=True)
    docbin = DocBin(docs=[eg.reference for eg in train_examples(nlp)])
    docbin.to_disk(tmp_path / "train.spacy")
    command = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(CONFIG),
        "--paths.train",
        str(tmp_path / "train.spacy"),
        "--paths.dev",
        str(tmp_path / "train.spacy"),
        "--components.transformer.model.name",
        tiny,
        "--training.max_steps",
        "12",
        "--training.eval_frequency",
        "6",
        "--training.logger.progress_every",
        "4",
        "--components.transformer.model.mixed_precision",
        "false",
    ]
    result = run_process_tree(command, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "Initial learn rate: 0.0" in out and "linear warm-up" in " ".join(out.split())
    steps = [line.split(" (")[0] for line in out.splitlines() if line.startswith("step ")]
    assert steps == ["step 4/12", "step 8/12"]
