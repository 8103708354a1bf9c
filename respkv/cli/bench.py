"""``respkv bench``: batch SET, GET (verified byte for byte) and EXISTS throughput.

It keeps the flags and the text output of LMCache's reference RESP benchmark
(``--host --port --chunk-mb --num-workers --num-keys --username --password``) so results
can be compared line for line, and adds ``--url``, ``--backend``, ``--repeat``,
``--warmup`` and ``--json``. Given no server it starts a throwaway ``redis-server`` or
``valkey-server`` on a free loopback port with the recommended flags and stops it at
the end, so it works on a fresh machine. The measuring itself lives in
:mod:`respkv.cli._measure`.

Units. Like the reference, sizes are binary: ``KB`` is 1024 bytes and ``GB`` is 2**30
bytes (GiB); the text output says so and the JSON output carries raw bytes and seconds.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from respkv._options import default_num_workers
from respkv.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_backend_flag,
    add_json_flag,
    check_backend,
    check_memory,
    check_output_path,
    check_workers,
    chunk_bytes,
    int_at_least,
    open_client,
    positive_float,
    write_json,
)
from respkv.cli._measure import GIB, KIB, BenchConfig, BenchReport, OpStats, run_bench
from respkv.cli._progress import PhaseReporter
from respkv.cli._target import add_server_flags, named_by, server

__all__ = [
    "add_parser",
    "cmd_bench",
    "format_header",
    "format_report",
    "format_results",
    "report_json",
]

#: Width of the dashed rules in the text report (the reference's width).
RULE_WIDTH: Final = 60
#: The text report's title, kept from the reference benchmark.
TITLE: Final = "Redis RESP Client Benchmark"
#: Schema name and version of the JSON report (bump on incompatible changes).
JSON_SCHEMA: Final = "respkv.bench/1"
UNITS_NOTE: Final = "Units: KB = 1024 bytes, GB = 2^30 bytes (GiB), as the reference counts"


def add_parser(sub: Any) -> None:
    """Register ``bench`` on the subcommand parsers ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="batch SET/GET/EXISTS throughput, GET verified byte for byte",
        description="Batch SET, GET (verified byte for byte) and EXISTS of NUM_KEYS chunks, "
        "in the output format of LMCache's reference benchmark. Sizes are binary: "
        "KB = 1024 bytes, GB = 2^30 bytes (GiB).",
    )
    add_server_flags(p, embedded=True)
    add_backend_flag(p)
    p.add_argument(
        "--chunk-mb",
        type=positive_float,
        default=4.0,
        help="chunk size in MiB, fractions allowed (default 4)",
    )
    p.add_argument(
        "--num-workers",
        type=int_at_least(1),
        default=None,
        help="worker threads, one connection each (default: the library's for this "
        f"machine's cores, {default_num_workers()} here)",
    )
    p.add_argument(
        "--num-keys", type=int_at_least(1), default=500, help="keys, one chunk each (default 500)"
    )
    p.add_argument(
        "--repeat",
        type=int_at_least(1),
        default=1,
        help="timed runs; the median is shown (default 1)",
    )
    p.add_argument(
        "--warmup",
        type=int_at_least(0),
        default=1,
        help="untimed runs first (default 1: the first SET into an empty server "
        "also pays for its memory allocation)",
    )
    p.add_argument(
        "--unix",
        action="store_true",
        help="connect through the throwaway server's unix socket instead of loopback TCP "
        "(a co-located server; a running one: --url resp+unix:///path)",
    )
    add_json_flag(p)
    from respkv.cli import cluster  # --cluster [N] (respkv.cli.cluster)

    cluster.add_bench_flag(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        config = BenchConfig(
            chunk_bytes(args.chunk_mb),
            args.num_keys,
            args.num_workers or default_num_workers(),
            repeat=args.repeat,
            warmup=args.warmup,
        )
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    check_workers([config.num_workers])
    check_output_path(args.json, "--json")
    info = check_backend(args.backend)
    named = named_by(args) is not None
    if args.unix and (named or args.cluster):
        raise CliError(
            "--unix connects to the throwaway server; name a running server's socket "
            "with --url resp+unix:///path/to/socket",
            EXIT_USAGE,
        )
    check_memory(config.total_bytes * (2 if named else 3), "this benchmark")
    text = args.json != "-"
    from respkv.cli.cluster import cluster_target, per_master, per_master_lines

    with cluster_target(args) if args.cluster else server(args) as target:
        options = target.options.replace(num_workers=config.num_workers)
        if args.unix and target.unix_path is not None:
            options = options.replace(unix_path=target.unix_path)
        if text:  # the header at once: the run itself takes seconds to minutes
            header = format_header(config, options.address, f"Backend: {info.name} ({info.reason})")
            print(header, flush=True)
        reporter = PhaseReporter(sys.stderr, "respkv bench", config.chunk_bytes)
        with open_client(options, args.backend) as client:
            try:
                report = run_bench(client, config, progress=reporter)
            finally:
                reporter.close()
            masters = per_master(client, report)
    if text:
        print(format_results(report))
        if masters is not None:
            print(per_master_lines(masters))
    if args.json is not None:
        extra = {
            "server": {
                "embedded": target.embedded is not None,
                "software": target.embedded,
                "named_by": target.source or None,
            },
            "backend": {"requested": info.requested, "reason": info.reason},
        }
        if masters is not None:
            extra["cluster"] = {"masters": len(masters), "per_master": masters}
        write_json(report_json(report, extra), args.json)
    return EXIT_OK if report.passed else EXIT_FAILED


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f}"


def _kb(nbytes: int) -> str:
    kb = nbytes / KIB
    return f"{kb:.0f}" if kb == int(kb) else f"{kb:.1f}"


def format_header(config: BenchConfig, address: str, backend_line: str) -> str:
    """The first lines of the reference output: what is measured, before measuring."""
    lines = [
        TITLE,
        f"Server: {address}, Workers: {config.num_workers}",
        f"Chunk size: {_kb(config.chunk_bytes)}KB, Keys: {config.num_keys}",
        backend_line,
    ]
    if config.repeat > 1 or config.warmup:
        lines.append(f"Runs: {config.repeat} timed (median shown), {config.warmup} warmup")
    lines += [UNITS_NOTE, "-" * RULE_WIDTH]
    return "\n".join(lines)


def _failed(stats: OpStats) -> str | None:
    """The phase line's text for a failed operation (a failure, not a rate), or None."""
    if stats.failed_keys:
        return f"FAILED, {stats.failed_keys} of {stats.keys} keys (see below)"
    if stats.mismatched_keys:
        return f"FAILED, {stats.mismatched_keys} of {stats.keys} values did not verify"
    return None


def format_results(report: BenchReport) -> str:
    """The rest of the reference output: one line per operation, then the verdict.

    An operation with failed keys shows its failure where the rate would be: a rate
    of keys that failed (an ``-OOM`` comes back fast) is not a measurement."""
    cfg = report.config
    set_, get = report.set, report.get
    lines = [
        "Batch SET: "
        + (_failed(set_) or f"{_gib(set_.bytes_per_s)} GB/s ({_gib(set_.bytes)} GB written)"),
        "Batch GET: "
        + (_failed(get) or f"{_gib(get.bytes_per_s)} GB/s ({_gib(get.bytes)} GB read)"),
        "Batch EXISTS: "
        + (
            _failed(report.exists)
            or f"{report.exists.ops_per_s:.0f} ops/s ({report.exists.hits}/{cfg.num_keys} hits)"
        ),
        "-" * RULE_WIDTH,
    ]
    if report.passed:
        lines.append("All tests passed")
    else:
        lines += [f"FAILED: {line}" for line in report.failures()]
    return "\n".join(lines)


def format_report(report: BenchReport, *, backend_line: str | None = None) -> str:
    """The reference benchmark's whole text output (plus the backend and unit lines)."""
    header = format_header(
        report.config, report.address, backend_line or f"Backend: {report.backend}"
    )
    return header + "\n" + format_results(report)


def _op_json(stats: OpStats) -> dict[str, Any]:
    out: dict[str, Any] = {
        "keys": stats.keys,
        "seconds": stats.seconds,
        "median_s": stats.median_s if stats.seconds else None,
        "failed_keys": stats.failed_keys,
        "first_error": stats.first_error,
    }
    # A failed operation has no rate (see format_results): null, not a number.
    failed = not stats.ok
    if stats.bytes:
        out["bytes"] = stats.bytes
        out["bytes_per_s"] = None if failed else stats.bytes_per_s
        out["client_cpu_seconds"] = stats.cpu_seconds
        out["client_cpu_s_per_gb"] = stats.cpu_s_per_gb
    else:
        out["ops_per_s"] = None if failed else stats.ops_per_s
    return out


def report_json(report: BenchReport, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of ``respkv bench --json`` (schema ``respkv.bench/1``)."""
    cfg = report.config
    doc: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "server": {"address": report.address},
        "backend": {"name": report.backend},
        "config": {
            "chunk_bytes": cfg.chunk_bytes,
            "num_keys": cfg.num_keys,
            "num_workers": cfg.num_workers,
            "repeat": cfg.repeat,
            "warmup": cfg.warmup,
        },
        "units": {
            "bytes_per_s": "bytes per second",
            "seconds": "wall-clock seconds",
            "client_cpu_s_per_gb": (
                "this process's CPU seconds (user + system, all threads) per 1e9 bytes, "
                "median of the timed runs"
            ),
        },
        "set": _op_json(report.set),
        "get": {
            **_op_json(report.get),
            "verified": report.get.ok,
            "mismatched_keys": report.get.mismatched_keys,
            "first_mismatch": report.get.first_mismatch,
        },
        "exists": {**_op_json(report.exists), "hits": report.exists.hits},
        "passed": report.passed,
        "failures": report.failures(),
    }
    if extra:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            else:
                doc[key] = value
    return doc
