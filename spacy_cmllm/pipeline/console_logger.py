"""spaCy's console logger, plus progress that shows in plain logs.

spaCy's progress bar (tqdm with ``disable=None``) draws only on a terminal: under
``spacy project run`` with its output in a file or a CI log, a CPU training run prints its
step-0 evaluation and then nothing until the next one, minutes later. This logger prints
spaCy's table as before and, when stdout is not a terminal, one plain line every
``progress_every`` steps, with the time taken and an estimate of the
time left.

It also explains the "Initial learn rate: 0.0" that spaCy prints before training: that is
the heads' rate at step 0 of a linear warm-up (thinc's warmup_linear.v1 starts at 0), not a
misconfiguration.
"""

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from spacy.training.loggers import console_logger as spacy_console_logger
from wasabi import Printer

# Returns the formatted line instead of printing it to sys.stdout, as spaCy's loggers do.
msg = Printer(no_print=True)

LogStep = Callable[[dict[str, Any] | None], None]


def learn_rate_notes(config: dict[str, Any]) -> list[str]:
    """What the learning rates do at the start of training, read from an interpolated
    config: one line per warm-up that starts at (or near) zero."""
    notes = []
    rate = config.get("training", {}).get("optimizer", {}).get("learn_rate")
    if isinstance(rate, dict) and rate.get("@schedules") == "warmup_linear.v1":
        notes.append(
            f"The initial learn rate 0.0 is the start of the heads' linear warm-up "
            f"([training.optimizer.learn_rate], warmup_linear.v1): it rises to "
            f"{rate.get('initial_rate')} over {rate.get('warmup_steps')} steps, then falls "
            f"linearly to 0 at step {rate.get('total_steps')}."
        )
    for name, component in config.get("components", {}).items():
        model = component.get("model", {}) if isinstance(component, dict) else {}
        adapters = model.get("adapter_optimizer") if isinstance(model, dict) else None
        if isinstance(adapters, dict) and adapters.get("@misc") == "spacy-cmllm.AdapterOptimizer.v1":
            notes.append(
                f"The decoder's adapters ({name}) have their own optimizer: a "
                f"{adapters.get('warmup')} warm-up (a fraction of the steps if below 1) to "
                f"{adapters.get('learn_rate')}, then {adapters.get('schedule')} decay."
            )
    return notes


def _is_terminal(stream: IO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def progress_line(step: int, max_steps: int, elapsed: float) -> str:
    """One plain progress line: the step (as spaCy's table numbers it), time taken, and
    time left where max_steps is set."""
    if max_steps > 0:
        left = elapsed / max(step, 1) * max(max_steps - step, 0)
        return (
            f"step {step}/{max_steps} ({100 * step / max_steps:.0f} %), "
            f"{_duration(elapsed)} elapsed, about {_duration(left)} left"
        )
    return f"step {step}, {_duration(elapsed)} elapsed"


def console_logger(*, progress_bar: bool, progress_every: int, console_output: bool = True):
    """A spaCy training logger: spacy.ConsoleLogger.v2's table (and its progress bar on a
    terminal), learn-rate notes at the start, and a plain progress line every
    ``progress_every`` steps when stdout is not a terminal (0: never)."""
    inner_setup = spacy_console_logger(progress_bar=progress_bar, console_output=console_output)

    def setup(nlp: Any, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> tuple[LogStep, Callable[[], None]]:
        inner_step, finalize = inner_setup(nlp, stdout, stderr)

        def write(text: str) -> None:
            print(text, file=stdout, flush=True)

        try:
            config = nlp.config.interpolate()
        except Exception:  # an uninterpolatable config only costs the notes
            config = nlp.config
        if console_output:
            for note in learn_rate_notes(config):
                write(msg.info(note))
        plain = console_output and progress_every > 0 and not _is_terminal(stdout)
        max_steps = int(config.get("training", {}).get("max_steps") or 0)
        if plain:
            write(msg.info(f"Progress: a line every {progress_every} steps (stdout is not a terminal)"))
        started = time.perf_counter()
        step = -1

        def log_step(info: dict[str, Any] | None) -> None:
            nonlocal step
            # spaCy calls this once per step: with the scores at evaluation steps, else
            # None. Steps are counted as spaCy's table numbers them (from 0).
            step = int(info["step"]) if info is not None else step + 1
            inner_step(info)
            if plain and info is None and step % progress_every == 0:
                write(progress_line(step, max_steps, time.perf_counter() - started))

        return log_step, finalize

    return setup
