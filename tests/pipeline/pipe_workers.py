"""Run a saved pipeline with nlp.pipe(n_process=2) in a child process of the tests, so that a
hang is killed by the test's timeout instead of blocking the test session.

    python -m tests.pipeline.pipe_workers PIPELINE START_METHOD

prints one JSON line: whether the workers' Docs equal one process's, the torch threads each
worker computed on, and the parent's threads before and after.
"""

import json
import multiprocessing
import sys

import numpy
import spacy
import torch
from spacy.language import Language

TEXTS = [f"John {i} lives in New York and works for Google near Paris ." for i in range(12)]
PARENT_THREADS = 2


@Language.component("record_torch_threads")
def record_torch_threads(doc):
    doc.user_data["torch_threads"] = torch.get_num_threads()
    return doc


def annotations(docs):
    out = []
    for doc in docs:
        hidden = doc._.trf_data.model_output.last_hidden_state if doc.has_extension("trf_data") else None
        out.append(
            {
                "tags": [t.tag_ for t in doc],
                "ents": [(e.start, e.end, e.label_) for e in doc.ents],
                "hidden": None if hidden is None else numpy.asarray(hidden).tolist(),
                "threads": doc.user_data.get("torch_threads"),
            }
        )
    return out


def main(path: str, method: str) -> dict:
    multiprocessing.set_start_method(method, force=True)
    torch.set_num_threads(PARENT_THREADS)
    nlp = spacy.load(path)
    nlp.add_pipe("record_torch_threads", after="transformer")
    # One process first: the parent's OpenMP pool runs on several threads before the fork.
    one = annotations(nlp.pipe(TEXTS, batch_size=4))
    before = torch.get_num_threads()
    two = annotations(nlp.pipe(TEXTS, batch_size=4, n_process=2))
    strip = lambda rows: [{k: v for k, v in row.items() if k != "threads"} for row in rows]  # noqa: E731
    return {
        "same": strip(one) == strip(two),
        "n_docs": len(two),
        "has_hidden": all(row["hidden"] is not None for row in two),
        "worker_threads": sorted({row["threads"] for row in two}),
        "parent_threads": [before, torch.get_num_threads()],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
