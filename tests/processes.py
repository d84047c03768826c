"""Child processes for tests that run the project's commands."""

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence


def run_process_tree(
    command: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None, cwd=None
) -> subprocess.CompletedProcess:
    """subprocess.run(command, capture_output=True, text=True) in a session of its own, so
    that a timeout kills the whole tree.

    `spacy project run` starts the training script as a grandchild; subprocess.run's timeout
    kills only the direct child, and the orphaned training would go on holding the CPU for
    the rest of the test session."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
