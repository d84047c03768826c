"""`python -m spacy_cmllm annotate INPUT OUTPUT --model NAME`: a corpus through a pipeline."""

import argparse
import json

from wasabi import msg

from ..annotate import AnnotateJob, run_local, run_ray


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a .jsonl file (one JSON object per line) or a .parquet file")
    parser.add_argument("output", help="output directory: part files per shard, rejects, receipts")
    parser.add_argument("--model", required=True, help="pipeline package name or directory, as for spacy.load()")
    parser.add_argument("--text-field", default="text", help="name of the field that holds the text (default: text)")
    parser.add_argument(
        "--keep-fields",
        default=None,
        help="comma-separated fields to carry through (default: every field but the text)",
    )
    parser.add_argument(
        "--format", choices=["jsonl", "parquet"], default=None, help="output format (default: that of the input)"
    )
    parser.add_argument("--shard-size", type=int, default=1000, help="input rows per output shard")
    parser.add_argument("--batch-size", type=int, default=64, help="documents per nlp.pipe batch")
    parser.add_argument("--code", default=None, help="Python file to import first (custom components)")
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU for a local run (default: CPU)")
    parser.add_argument("--ray", action="store_true", help="run on Ray (a local instance unless --ray-address)")
    parser.add_argument("--ray-address", default=None, help="address of a running Ray cluster (implies --ray)")
    parser.add_argument(
        "--num-actors",
        type=int,
        default=None,
        help="Ray actors, each with the pipeline loaded (default: one per GPU, else per CPU)",
    )
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument(
        "--gpus-per-actor", type=float, default=None, help="default: 1 when the cluster has GPUs, else 0"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    job = AnnotateJob(
        input=args.input,
        output=args.output,
        model=args.model,
        text_field=args.text_field,
        keep_fields=[f.strip() for f in args.keep_fields.split(",") if f.strip()] if args.keep_fields else None,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        format=args.format,
        code=args.code,
        gpu_id=args.gpu_id,
    )
    if args.ray or args.ray_address:
        result = run_ray(
            job,
            address=args.ray_address,
            num_actors=args.num_actors,
            cpus_per_actor=args.cpus_per_actor,
            gpus_per_actor=args.gpus_per_actor,
            progress=not args.quiet,
        )
    else:
        result = run_local(job, progress=not args.quiet)
    msg.good(
        f"{result['rows']} rows: {result['written']} annotated, {result['rejected']} rejected "
        f"({result['shards']} shards, {result['shards_skipped']} already done) -> {args.output}"
    )
    if result["rejected"]:
        msg.warn(f"rejected rows and their reasons: {args.output}/_rejects/*.jsonl")
    print(json.dumps(result))
    return 0
