"""A pipeline component that kills its process the first time it sees "CRASH" in a text.

Loaded with `annotate --code tests/annotate/crash_once.py` to show that a Ray worker that
dies mid-shard is restarted and its shard retried. The marker file makes the crash happen
once, whichever process meets the text first.
"""
import os
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
