"""Pipeline components that misbehave on purpose, loaded with `annotate --code` in the Ray tests.

crash_once: kills its process the first time it sees "CRASH" in a text, to show that a Ray
worker that dies mid-shard is restarted and its shard retried. The marker file makes the
crash happen once, whichever process meets the text first.
slow_down: sleeps per document, so that a job lasts long enough to be stopped mid-way.
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


@Language.factory("slow_down", default_config={"seconds": 0.1})
def make_slow_down(nlp, name, seconds):
    def slow_down(doc):
        time.sleep(seconds)
        return doc

    return slow_down
