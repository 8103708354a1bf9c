"""``respkv chunk-size``: KV-cache bytes per token and tokens per chunk for a model.

The arithmetic lives in :mod:`respkv.chunksize`; this module reads the flags, picks the
model (a preset or explicit dimensions) and prints text or JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from respkv.cli._common import EXIT_OK, EXIT_USAGE, MIB, CliError, int_at_least

__all__ = ["add_parser", "cmd_chunk_size"]


def add_parser(sub: Any) -> None:
    """Register ``chunk-size`` on the subcommand parsers ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "chunk-size",
        help="KV-cache bytes per token and tokens per chunk for a model",
        description="KV-cache chunk-size calculator: give --model (a preset) or "
        "--layers, --kv-heads and --head-dim.",
    )
    p.add_argument("--model", help="preset name, e.g. Llama-3.1-8B (see --list)")
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
        default=1,
        help="round tokens per chunk down to a multiple of this",
    )
    p.add_argument("--list", action="store_true", help="list the model presets")
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of text")
    p.set_defaults(func=cmd_chunk_size)


def cmd_chunk_size(args: argparse.Namespace) -> int:
    from respkv import chunksize as cs

    if args.list:
        print(f"{'model':<20}{'layers':>7}{'kv_heads':>9}{'head_dim':>9}{'per token (bf16)':>18}")
        for name, d in cs.PRESETS.items():
            print(
                f"{name:<20}{d.layers:>7}{d.kv_heads:>9}{d.head_dim:>9}"
                f"{cs.format_size(d.bytes_per_token()):>18}"
            )
        return EXIT_OK
    explicit = (args.layers, args.kv_heads, args.head_dim)
    try:
        if args.model and any(v is not None for v in explicit):
            raise ValueError("give --model or --layers/--kv-heads/--head-dim, not both")
        if args.model:
            dims = cs.preset(args.model)
        elif all(v is not None for v in explicit):
            dims = cs.ModelDims("custom", args.layers, args.kv_heads, args.head_dim)
        else:
            raise ValueError(
                "give --model NAME (see --list) or all of --layers, --kv-heads and --head-dim"
            )
        per_token = dims.bytes_per_token(args.dtype, args.tp)
        target = cs.parse_size(args.target)
        tokens = cs.tokens_per_chunk(per_token, target, multiple_of=args.multiple_of)
        elem = cs.dtype_bytes(args.dtype)
        fixed = cs.chunk_bytes(per_token, args.tokens) if args.tokens else None
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    sweet = {f"{m} MiB": (m * MIB) // per_token for m in (1, 2, 4)}
    if args.json:
        doc: dict[str, Any] = {
            "model": dims.name,
            "layers": dims.layers,
            "kv_heads": dims.kv_heads,
            "head_dim": dims.head_dim,
            "dtype": args.dtype,
            "dtype_bytes": elem,
            "tp": args.tp,
            "bytes_per_token": per_token,
            "target_bytes": target,
            "tokens_per_chunk": tokens,
            "chunk_bytes": tokens * per_token,
            "tokens_for": sweet,
        }
        if fixed is not None:
            doc["tokens"] = args.tokens
            doc["bytes_for_tokens"] = fixed
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    print(
        f"Model: {dims.name}: {dims.layers} layers, {dims.kv_heads} KV heads x head_dim "
        f"{dims.head_dim}, {args.dtype} ({elem} bytes), tp {args.tp}"
    )
    print(f"KV cache per token: {cs.format_size(per_token)} ({per_token} bytes)")
    print(
        f"Tokens per chunk for a {cs.format_size(target)} target: {tokens} "
        f"({cs.format_size(tokens * per_token)} per chunk)"
    )
    print("Sweet spot 1-4 MiB: " + ", ".join(f"{k}: {v} tokens" for k, v in sweet.items()))
    if fixed is not None:
        print(f"A chunk of {args.tokens} tokens: {cs.format_size(fixed)}{_size_advice(fixed)}")
    return EXIT_OK


def _size_advice(nbytes: int) -> str:
    if nbytes >= 8 * MIB:
        return " (too big: GETs of 8 MiB and more collapse on Redis/Valkey; aim for 1-4 MiB)"
    if nbytes < MIB:
        return " (small: per-request overhead dominates below 1 MiB; aim for 1-4 MiB)"
    return " (in the 1-4 MiB sweet spot)" if nbytes <= 4 * MIB else " (above 4 MiB)"
