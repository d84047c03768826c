"""Annotate a corpus with a spaCy pipeline, in this process or on a Ray cluster.

Both ways run the same `annotate_shard` on the same shards and write through the same
ShardStore, so their output files are the same; Ray only decides where a shard runs. On Ray,
Ray Data maps the pending shards through a pool of actors that each load the pipeline once;
an actor that dies is restarted and its shard retried (max_restarts / max_task_retries),
which is safe because writing a shard is idempotent.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import CmllmError, CmllmImportError, Errors
from .inputs import FORMATS, Row, Shard, input_format, plan_shards, read_shard
from .outputs import ShardStore, input_identity


@dataclass
class AnnotateJob:
    input: str
    output: str
    model: str
    text_field: str = "text"
    keep_fields: list[str] | None = None  # None: every input field but the text
    shard_size: int = 1000
    batch_size: int = 64
    format: str | None = None  # output format; None: that of the input
    code: str | None = None  # a Python file to import first (custom components)
    gpu_id: int = -1

    def __post_init__(self) -> None:
        self.input_format = input_format(Path(self.input))
        self.format = self.format or self.input_format
        for name, value, ok, why in (
            (
                "shard_size",
                self.shard_size,
                isinstance(self.shard_size, int) and self.shard_size > 0,
                "must be a positive integer",
            ),
            (
                "batch_size",
                self.batch_size,
                isinstance(self.batch_size, int) and self.batch_size > 0,
                "must be a positive integer",
            ),
            ("format", self.format, self.format in FORMATS, f"choose from {list(FORMATS)}"),
            ("text_field", self.text_field, bool(self.text_field), "must name a field"),
        ):
            if not ok:
                raise CmllmError(Errors.E040.format(name=name, value=value, why=why))

    @property
    def output_format(self) -> str:
        """``format``, which __post_init__ has filled in: typed without the None."""
        assert self.format is not None
        return self.format

    def manifest(self) -> dict[str, Any]:
        return {
            **input_identity(Path(self.input)),
            "input": str(self.input),
            "model": str(self.model),
            "text_field": self.text_field,
            "keep_fields": self.keep_fields,
            "shard_size": self.shard_size,
            "format": self.format,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The annotation's own columns; a carried input field of the same name is kept as "input_<name>".
OUTPUT_COLUMNS = ("_row", "text", "tokens", "tags", "entities")


def doc_record(row: Row, doc) -> dict[str, Any]:
    carried = {(f"input_{name}" if name in OUTPUT_COLUMNS else name): value for name, value in row.fields.items()}
    return {
        **carried,
        "_row": row.row,
        "text": doc.text,
        "tokens": [token.text for token in doc],
        "tags": [token.tag_ for token in doc],
        "entities": [{"start": ent.start_char, "end": ent.end_char, "label": ent.label_} for ent in doc.ents],
    }


def annotate_shard(nlp, job: AnnotateJob, shard: Shard, store: ShardStore) -> dict[str, int]:
    rows, rejects = read_shard(
        Path(job.input), job.input_format, shard, text_field=job.text_field, keep_fields=job.keep_fields
    )
    docs = nlp.pipe((row.text for row in rows), batch_size=job.batch_size)
    records = [doc_record(row, doc) for row, doc in zip(rows, docs)]
    return store.write(shard, records, rejects)


def load_pipeline(job: AnnotateJob, *, gpu: str = "none"):
    """gpu: "require" (an explicit --gpu-id), "prefer" (a Ray actor holding a GPU) or "none".

    The decoder moves to CUDA by itself whenever torch sees a GPU; thinc's heads follow only
    with cupy installed, which "prefer" does not demand."""
    import spacy

    import_code(job.code)
    if gpu == "require":
        spacy.require_gpu(max(job.gpu_id, 0))
    elif gpu == "prefer":
        spacy.prefer_gpu(0)  # inside an actor, Ray exposes its GPU as device 0
    return spacy.load(job.model)


def import_code(path: str | None) -> None:
    """Import a user's Python file (custom components, registered functions), like spaCy's --code."""
    if not path:
        return
    name = "spacy_cmllm_user_code_" + Path(path).stem
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CmllmError(Errors.E050.format(path=str(path), why="not an importable Python file"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def prepare(job: AnnotateJob) -> tuple[ShardStore, list[Shard], list[Shard]]:
    """Open (or resume) the output; return it with all shards and the ones still to do."""
    shards = plan_shards(Path(job.input), job.input_format, job.shard_size)
    store = ShardStore(Path(job.output), job.output_format)
    store.open(job.manifest())
    return store, shards, [shard for shard in shards if not store.is_done(shard.index)]


def run_local(job: AnnotateJob, *, progress: bool = True) -> dict[str, int]:
    from tqdm import tqdm

    store, shards, todo = prepare(job)
    nlp = load_pipeline(job, gpu="require" if job.gpu_id >= 0 else "none")
    with tqdm(total=sum(s.stop - s.start for s in todo), unit="row", disable=not progress, desc="annotate") as bar:
        for shard in todo:
            annotate_shard(nlp, job, shard, store)
            bar.update(shard.stop - shard.start)
    return summary(store, shards, todo)


def run_ray(
    job: AnnotateJob,
    *,
    address: str | None = None,
    num_actors: int | None = None,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float | None = None,
    progress: bool = True,
) -> dict[str, int]:
    try:
        import ray
        from ray.data import ActorPoolStrategy
    except ImportError as err:
        raise CmllmImportError(Errors.E052.format(what="--ray", package="ray[data]", extra="ray")) from err
    from tqdm import tqdm

    store, shards, todo = prepare(job)
    # Ray forks workers after the driver's tokenizer may have run; its thread pool must not be shared.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=progress)
    try:
        if todo:
            resources = ray.cluster_resources()
            if gpus_per_actor is None:
                gpus_per_actor = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
            if num_actors is None:
                num_actors = (
                    int(resources.get("GPU", 0) // gpus_per_actor)
                    if gpus_per_actor
                    else int(resources.get("CPU", 1) // cpus_per_actor)
                )
            num_actors = max(1, min(num_actors, len(todo)))
            ray.data.DataContext.get_current().enable_progress_bars = False
            results = ray.data.from_items([{"shard": shard.index} for shard in todo]).map_batches(
                _ShardWorker,
                fn_constructor_kwargs={
                    "job": job.to_dict(),
                    "shards": [shard.to_dict() for shard in todo],
                    "use_gpu": gpus_per_actor > 0,
                    "threads": max(1, int(cpus_per_actor)),
                },
                batch_size=1,
                compute=ActorPoolStrategy(size=num_actors),
                num_cpus=cpus_per_actor,
                num_gpus=gpus_per_actor,
                # Left at Ray Data's defaults (max_restarts=-1, max_task_retries=-1): a dead
                # actor is restarted and its shard retried; tests/annotate/test_ray.py checks it.
            )
            sizes = {shard.index: shard.stop - shard.start for shard in todo}
            with tqdm(total=sum(sizes.values()), unit="row", disable=not progress, desc="annotate (ray)") as bar:
                for result in results.iter_rows():
                    bar.update(sizes[int(result["shard"])])
        return summary(store, shards, todo)
    finally:
        if started:
            ray.shutdown()


class _ShardWorker:
    """One Ray actor: loads the pipeline once, then annotates the shards it is given."""

    def __init__(self, job: dict[str, Any], shards: list[dict[str, int]], use_gpu: bool, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.job = AnnotateJob(**job)
        self.store = ShardStore(Path(self.job.output), self.job.output_format)
        self.shards = {item["index"]: Shard(**item) for item in shards}
        self.nlp = load_pipeline(self.job, gpu="prefer" if use_gpu else "none")

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[int]]:
        done = [annotate_shard(self.nlp, self.job, self.shards[int(i)], self.store) for i in batch["shard"]]
        return {key: [receipt[key] for receipt in done] for key in ("shard", "written", "rejected")}


def summary(store: ShardStore, shards: list[Shard], todo: list[Shard]) -> dict[str, int]:
    written, rejected = store.check_complete(shards)
    return {
        "rows": written + rejected,
        "written": written,
        "rejected": rejected,
        "shards": len(shards),
        "shards_skipped": len(shards) - len(todo),
    }
