"""Annotating corpora: JSONL/Parquet in, annotated shards out, locally or on Ray."""

from .job import AnnotateJob, run_local, run_ray

__all__ = ["AnnotateJob", "run_local", "run_ray"]
