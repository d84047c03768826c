"""`python -m spacy_cmllm probe SOURCE --unmask SPEC`: configured vs measured, per layer."""

import argparse
import json
from typing import Any

from wasabi import msg

from ..decoder.layout import decoder_layers
from ..decoder.probe import bidirectional_layers, last_copy_dependence
from ..decoder.unmask import UnmaskSpec, group_bounds, parse_spec, unmask_layers


def parse_cli_spec(text: str) -> UnmaskSpec:
    """'0011' stays a group string; '3,4,5' or '[3, 4, 5]' becomes a list of layer indices."""
    text = text.strip()
    if text.startswith("[") or "," in text:
        return [int(part) for part in text.strip("[]").split(",") if part.strip()]
    return text


def layer_groups(n_layers: int, spec: UnmaskSpec) -> list[int | None]:
    if not isinstance(spec, str):
        return [None] * n_layers
    groups: list[int | None] = [None] * n_layers
    for g, (start, end) in enumerate(group_bounds(n_layers, len(spec.strip()))):
        for i in range(start, end):
            groups[i] = g
    return groups


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="hub name, local directory, .gguf file or package:<module>/<file>")
    parser.add_argument(
        "--unmask", required=True, help="group string such as 0011 (leftmost = input side) or layer indices 3,4,5"
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="also measure, with the text repeated this many times, "
        "whether each token's vector (read from the last copy) depends on every token",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..decoder.load import load_decoder

    spec = parse_cli_spec(args.unmask)
    if args.repeat < 1:
        # wasabi's overloads name exit codes 0 and 1 only; it exits with any (2: a usage error).
        msg.fail(f"--repeat {args.repeat}: give an integer >= 1", exits=2)  # type: ignore[call-overload]
    model, tokenizer = load_decoder(
        args.source, dtype=args.dtype, attn_implementation=args.attn_implementation, lm_head=False
    )
    return report(model, spec, as_json=args.json, repeat=args.repeat, bos_id=getattr(tokenizer, "bos_token_id", None))


def report(model, spec: UnmaskSpec, *, as_json: bool = False, repeat: int = 1, bos_id: int | None = None) -> int:
    """Unmask `model` as `spec` says, measure, print one row per layer; 1 on any mismatch.
    With repeat > 1, also how many tokens' last-copy vectors depend on every token."""
    n_layers = len(decoder_layers(model))
    requested = set(parse_spec(spec, n_layers))
    unmask_layers(model, spec)
    measured = bidirectional_layers(model)
    groups = layer_groups(n_layers, spec)
    rows: list[dict[str, Any]] = [
        {"layer": i, "group": groups[i], "requested": i in requested, "measured": measured[i]} for i in range(n_layers)
    ]
    mismatches = [r["layer"] for r in rows if r["requested"] != r["measured"]]
    repetition = None
    if repeat > 1:
        seen = last_copy_dependence(model, repeat=repeat, bos_id=bos_id)
        repetition = {"repeat": repeat, "tokens": len(seen), "see_every_token": sum(all(row) for row in seen)}
    if as_json:
        print(json.dumps({"spec": spec, "layers": rows, "mismatches": mismatches, "repetition": repetition}))
    else:
        table = [
            (
                r["layer"],
                "-" if r["group"] is None else r["group"],
                _word(r["requested"]),
                _word(r["measured"]),
                "" if r["requested"] == r["measured"] else "MISMATCH",
            )
            for r in rows
        ]
        msg.table(table, header=("layer", "group", "requested", "measured", ""), divider=True)
        if mismatches:
            msg.fail(f"{len(mismatches)} layer(s) do not behave as requested: {mismatches}")
        else:
            msg.good(f"all {n_layers} layers behave as requested ({len(requested)} bidirectional)")
        if repetition:
            line = (
                f"repeat {repeat}: {repetition['see_every_token']} of {repetition['tokens']} tokens, read from the "
                "last copy, depend on every token of the text"
            )
            (msg.good if repetition["see_every_token"] == repetition["tokens"] else msg.warn)(line)
    return 1 if mismatches else 0


def _word(bidirectional: bool) -> str:
    return "bidirectional" if bidirectional else "causal"
