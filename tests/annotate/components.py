"""Pipeline components that misbehave on purpose, loaded with `annotate --code` in the Ray tests.

crash_once: kills its process the first time it sees "CRASH" in a text, to show that a Ray
worker that dies mid-shard is restarted and its shard retried. The marker file makes the
crash happen once, whichever process meets the text first.
stop_after: a deterministic mid-job stop. In each process, before its (N+1)-th document, it
creates a marker file (the first process to get there) and then holds every process at its
next document until a release file exists; the test waits for the marker and presses Ctrl-C
on the driver. Once the release file exists it passes documents through, so the resumed run
completes.
"""

import os
import time
from pathlib import Path

from spacy.language import Language


@Language.factory("crash_once", default_config={"marker": ""})
def make_crash_once(nlp, name, marker):
    return CrashOnce(Path(marker))


class CrashOnce:
    def __init__(self, marker: Path):
        self.marker = marker

    def __call__(self, doc):
        if "CRASH" in doc.text and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        return doc


@Language.factory("stop_after", default_config={"docs": 8, "marker": "", "release": ""})
def make_stop_after(nlp, name, docs, marker, release):
    return StopAfter(docs, Path(marker), Path(release))


class StopAfter:
    def __init__(self, docs: int, marker: Path, release: Path):
        self.docs, self.marker, self.release = docs, marker, release
        self.seen = 0

    def __call__(self, doc):
        if self.release.exists():
            return doc
        if self.seen >= self.docs and not self.marker.exists():
            try:
                with self.marker.open("x") as f:  # exactly one process creates it
                    f.write(str(os.getpid()))
            except FileExistsError:
                pass
        while self.marker.exists() and not self.release.exists():
            time.sleep(0.01)  # held until the driver is stopped (which ends this process)
        self.seen += 1
        return doc
