"""``respkv chunk-size``: KV-cache bytes per token and tokens per chunk for a model.

The arithmetic lives in :mod:`respkv.chunksize`; this module reads the flags, picks the
model (a preset, a Hugging Face ``config.json``, or explicit dimensions) and prints text
or JSON: bytes per token, the tokens that fit the target, the same rounded to the
engine's block granularity (both are shown: the rounded one is what to configure), and
a warning for a chunk above the server's 512 MiB value limit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from respkv.cli._common import EXIT_OK, EXIT_USAGE, MIB, CliError, int_at_least

if TYPE_CHECKING:
    from respkv.chunksize import ModelDims

__all__ = ["add_parser", "cmd_chunk_size"]


def add_parser(sub: Any) -> None:
    """Register ``chunk-size`` on the subcommand parsers ``sub``."""
    from respkv.chunksize import DEFAULT_MULTIPLE

    p: argparse.ArgumentParser = sub.add_parser(
        "chunk-size",
        help="KV-cache bytes per token and tokens per chunk for a model",
        description="KV-cache chunk-size calculator: give --model (a preset, or the path "
        "of a Hugging Face config.json or model directory) or --layers, --kv-heads and "
        "--head-dim.",
    )
    p.add_argument(
        "--model",
        help="preset name, e.g. meta-llama/Llama-3.1-8B-Instruct (see --list), or the path "
        "of a model's config.json (or of its directory)",
    )
    p.add_argument("--layers", type=int_at_least(1), help="transformer layers")
    p.add_argument("--kv-heads", type=int_at_least(1), help="key/value heads")
    p.add_argument("--head-dim", type=int_at_least(1), help="dimension of one head")
    p.add_argument("--dtype", default="bfloat16", help="KV-cache dtype (default bfloat16)")
    p.add_argument("--tp", type=int_at_least(1), default=1, help="tensor-parallel ranks")
    p.add_argument("--target", default="4MiB", help="target chunk size (default 4MiB)")
    p.add_argument("--tokens", type=int_at_least(1), help="size of a chunk of this many tokens")
    p.add_argument(
        "--multiple-of",
        type=int_at_least(1),
        default=DEFAULT_MULTIPLE,
        help="the engine's chunk granularity in tokens: the token count is also shown "
        f"rounded to a multiple of it (default {DEFAULT_MULTIPLE}, vLLM's block size)",
    )
    p.add_argument("--list", action="store_true", help="list the model presets")
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of text")
    p.set_defaults(func=cmd_chunk_size)


def _list_presets() -> int:
    from respkv import chunksize as cs

    print(f"{'model':<20}{'layers':>7}{'kv_heads':>9}{'head_dim':>9}{'per token (bf16)':>18}")
    for name, d in cs.PRESETS.items():
        print(
            f"{name:<20}{d.layers:>7}{d.kv_heads:>9}{d.head_dim:>9}"
            f"{cs.format_size(d.bytes_per_token()):>18}"
        )
    return EXIT_OK


def _model(args: argparse.Namespace) -> ModelDims:
    """The model's dimensions: explicit, a config.json, or a preset (ValueError if none)."""
    from respkv import chunksize as cs

    explicit = (args.layers, args.kv_heads, args.head_dim)
    if args.model and any(v is not None for v in explicit):
        raise ValueError("give --model or --layers/--kv-heads/--head-dim, not both")
    if args.model:
        if args.model.endswith(".json") or Path(args.model).exists():
            return cs.from_hf_config(args.model)
        try:
            return cs.preset(args.model)
        except ValueError as exc:
            raise ValueError(f"{exc}; or give the path of the model's config.json") from None
    if all(v is not None for v in explicit):
        return cs.ModelDims("custom", args.layers, args.kv_heads, args.head_dim)
    raise ValueError("give --model NAME (see --list) or all of --layers, --kv-heads and --head-dim")


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    """Every number the command reports, as its JSON document."""
    from respkv import chunksize as cs

    dims = _model(args)
    per_token = dims.bytes_per_token(args.dtype, args.tp)
    target = cs.parse_size(args.target)
    tokens = cs.tokens_per_chunk(per_token, target)
    rounded = cs.round_tokens(tokens, args.multiple_of)
    doc: dict[str, Any] = {
        "model": dims.name,
        "layers": dims.layers,
        "kv_heads": dims.kv_heads,
        "head_dim": dims.head_dim,
        "dtype": args.dtype,
        "dtype_bytes": cs.dtype_bytes(args.dtype),
        "tp": args.tp,
        "bytes_per_token": per_token,
        "target_bytes": target,
        "tokens_per_chunk": tokens,
        "chunk_bytes": tokens * per_token,
        "multiple_of": args.multiple_of,
        "tokens_rounded": rounded,
        "chunk_bytes_rounded": rounded * per_token,
        "tokens_for": {f"{m} MiB": (m * MIB) // per_token for m in (1, 2, 4)},
    }
    if args.tokens:
        doc["tokens"] = args.tokens
        doc["bytes_for_tokens"] = cs.chunk_bytes(per_token, args.tokens)
    doc["warnings"] = _warnings(doc)
    return doc


def _warnings(doc: dict[str, Any]) -> list[str]:
    """A warning for each size above what a server takes by default."""
    from respkv.chunksize import SERVER_VALUE_LIMIT, format_size

    limit = format_size(SERVER_VALUE_LIMIT)
    out = []
    for key, what in (
        ("chunk_bytes_rounded", f"a chunk of {doc['tokens_rounded']} tokens"),
        ("bytes_for_tokens", f"a chunk of {doc.get('tokens')} tokens"),
    ):
        size = doc.get(key)
        if size is not None and size > SERVER_VALUE_LIMIT:
            out.append(
                f"{what} is {format_size(size)}, above the server's {limit} value limit "
                "(proto-max-bulk-len): the server refuses it unless that limit is raised"
            )
    return out


def cmd_chunk_size(args: argparse.Namespace) -> int:
    from respkv.chunksize import format_size

    if args.list:
        return _list_presets()
    try:
        doc = _plan(args)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    per_token, tokens, rounded = (
        doc["bytes_per_token"],
        doc["tokens_per_chunk"],
        doc["tokens_rounded"],
    )
    print(
        f"Model: {doc['model']}: {doc['layers']} layers, {doc['kv_heads']} KV heads x head_dim "
        f"{doc['head_dim']}, {doc['dtype']} ({doc['dtype_bytes']} bytes), tp {doc['tp']}"
    )
    print(f"KV cache per token: {format_size(per_token)} ({per_token} bytes)")
    print(
        f"Tokens per chunk for a {format_size(doc['target_bytes'])} target: {tokens} "
        f"({format_size(tokens * per_token)} per chunk)"
    )
    above = " (above the target: one block is the smallest chunk)" if rounded > tokens else ""
    print(
        f"Rounded to a multiple of {doc['multiple_of']} tokens (the engine's block): {rounded} "
        f"({format_size(rounded * per_token)} per chunk){above}"
    )
    print(
        "Sweet spot 1-4 MiB: " + ", ".join(f"{k}: {v} tokens" for k, v in doc["tokens_for"].items())
    )
    if args.tokens:
        fixed = doc["bytes_for_tokens"]
        print(f"A chunk of {args.tokens} tokens: {format_size(fixed)}{_size_advice(fixed)}")
    for line in doc["warnings"]:
        print(f"Warning: {line}")
    return EXIT_OK


def _size_advice(nbytes: int) -> str:
    if nbytes >= 8 * MIB:
        return " (too big: GETs of 8 MiB and more collapse on Redis/Valkey; aim for 1-4 MiB)"
    if nbytes < MIB:
        return " (small: per-request overhead dominates below 1 MiB; aim for 1-4 MiB)"
    return " (in the 1-4 MiB sweet spot)" if nbytes <= 4 * MIB else " (above 4 MiB)"
