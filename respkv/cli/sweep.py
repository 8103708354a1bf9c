"""``respkv sweep``: batch SET and GET throughput over chunk sizes x worker counts.

Each point is one :func:`respkv.cli._measure.run_bench` without EXISTS: ``total_bytes``
worth of chunks (at least one per worker), ``warmup`` untimed and ``repeat`` timed runs,
the median kept. The chunks of one size are made once and reused for every worker
count. The result is two tables (SET, GET) of GiB/s, a JSON document
(schema ``respkv.sweep/1``) and, with matplotlib, a PNG plot.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from respkv.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    MIB,
    CliError,
    add_backend_flag,
    add_json_flag,
    check_backend,
    check_memory,
    check_output_path,
    check_workers,
    chunk_bytes,
    float_list,
    int_at_least,
    int_list,
    open_client,
    positive_float,
    write_json,
)
from respkv.cli._measure import GIB, BenchConfig, bench_keys, make_chunks, run_bench
from respkv.cli._progress import bar
from respkv.cli._target import add_server_flags, named_by, server

if TYPE_CHECKING:
    from respkv.client import Client

__all__ = [
    "SweepPoint",
    "add_parser",
    "cmd_sweep",
    "format_sweep",
    "plot_sweep",
    "run_sweep",
    "sweep_json",
]


def add_parser(sub: Any) -> None:
    """Register ``sweep`` on the subcommand parsers ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "sweep",
        help="throughput over chunk sizes x worker counts: table, JSON, PNG plot",
        description="Batch SET and GET throughput (GiB/s) for each chunk size and worker "
        "count. Progress goes to stderr.",
    )
    add_server_flags(p, embedded=True)
    add_backend_flag(p)
    p.add_argument(
        "--chunk-mb",
        type=float_list,
        default=None,
        help="comma-separated chunk sizes in MiB (default 0.5,1,2,4,8,16)",
    )
    p.add_argument(
        "--workers",
        type=int_list,
        default=None,
        help="comma-separated worker counts (default 1,2,4,8,16)",
    )
    p.add_argument(
        "--total-mb",
        type=positive_float,
        default=256.0,
        help="MiB moved per point and direction (default 256)",
    )
    p.add_argument(
        "--num-keys",
        type=int_at_least(1),
        default=None,
        help="keys per point (default: --total-mb worth, at least max workers)",
    )
    p.add_argument(
        "--repeat",
        type=int_at_least(1),
        default=3,
        help="timed runs per point; the median is used (default 3)",
    )
    p.add_argument(
        "--warmup", type=int_at_least(0), default=1, help="untimed runs per point (default 1)"
    )
    add_json_flag(p)
    p.add_argument("--plot", metavar="PNG", help="write a plot (needs respkv[plot])")
    p.set_defaults(func=cmd_sweep)


#: Chunk sizes of ``respkv sweep`` in MiB: around the 1-4 MiB sweet spot and past the
#: 8 MiB point where GET collapses on Redis/Valkey.
SWEEP_CHUNKS_MIB: Final = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
#: Worker counts of ``respkv sweep``.
SWEEP_WORKERS: Final = (1, 2, 4, 8, 16)
#: Bytes moved per sweep point and direction by default: large enough to dwarf the
#: per-batch overhead, small enough that 30 points finish in minutes on 2 cores.
SWEEP_TOTAL_BYTES: Final = 256 * MIB
SWEEP_SCHEMA: Final = "respkv.sweep/1"


@dataclass(frozen=True)
class SweepPoint:
    """One (chunk size, workers) measurement."""

    chunk_bytes: int
    num_workers: int
    num_keys: int
    set_seconds: tuple[float, ...]
    get_seconds: tuple[float, ...]
    verified: bool
    error: str | None

    @property
    def total_bytes(self) -> int:
        return self.chunk_bytes * self.num_keys

    @property
    def set_bytes_per_s(self) -> float:
        return self.total_bytes / statistics.median(self.set_seconds)

    @property
    def get_bytes_per_s(self) -> float:
        return self.total_bytes / statistics.median(self.get_seconds)


def sweep_keys(chunk: int, total_bytes: int, min_keys: int) -> int:
    """Keys per point: ``total_bytes`` worth of chunks of ``chunk`` bytes, at least
    ``min_keys``."""
    return max(min_keys, -(-total_bytes // chunk))


def run_sweep(
    connect: Callable[[int], Client],
    chunk_sizes: Sequence[int],
    workers: Sequence[int],
    *,
    total_bytes: int = SWEEP_TOTAL_BYTES,
    min_keys: int | None = None,
    repeat: int = 3,
    warmup: int = 1,
    on_point: Callable[[int, int, SweepPoint], None] | None = None,
) -> list[SweepPoint]:
    """Measure SET and GET for every chunk size x worker count.

    ``connect(num_workers)`` returns a client; it is closed after its points. The
    chunks for one size are made once and reused for every worker count.
    """
    min_keys = max(workers) if min_keys is None else min_keys
    points: list[SweepPoint] = []
    total_points = len(chunk_sizes) * len(workers)
    for chunk in chunk_sizes:
        n = sweep_keys(chunk, total_bytes, min_keys)
        src = make_chunks(n, chunk)
        dst = [bytearray(chunk) for _ in range(n)]
        keys = bench_keys(n)
        for w in workers:
            config = BenchConfig(chunk, n, w, repeat=repeat, warmup=warmup)
            with connect(w) as client:
                report = run_bench(
                    client, config, chunks=src, keys=keys, dst=dst, with_exists=False
                )
            failures = report.failures()
            point = SweepPoint(
                chunk,
                w,
                n,
                tuple(report.set.seconds),
                tuple(report.get.seconds),
                report.passed,
                "; ".join(failures) or None,
            )
            points.append(point)
            if on_point is not None:
                on_point(len(points), total_points, point)
        del src, dst
    return points


def _mib(nbytes: int) -> str:
    return f"{nbytes / MIB:g} MiB"


def format_sweep(points: Sequence[SweepPoint]) -> str:
    """Two tables (SET, GET) of GiB/s: a row per chunk size, a column per worker count."""
    chunks = sorted({p.chunk_bytes for p in points})
    workers = sorted({p.num_workers for p in points})
    by_key = {(p.chunk_bytes, p.num_workers): p for p in points}
    out = []
    for op in ("SET", "GET"):
        header = f"{op + ' GiB/s':<10}{'workers:':>8}" + "".join(f"{w:>8}" for w in workers)
        out += [header, "-" * len(header)]
        for c in chunks:
            cells = []
            for w in workers:
                p = by_key.get((c, w))
                if p is None:
                    cells.append(f"{'':>8}")
                    continue
                if not p.verified:  # a failed point has no rate
                    cells.append(f"{'FAILED':>7}!")
                    continue
                rate = p.set_bytes_per_s if op == "SET" else p.get_bytes_per_s
                cells.append(f"{rate / GIB:>7.2f} ")
            out.append(f"{_mib(c):<18}" + "".join(cells))
        out.append("")
    failed = [p for p in points if not p.verified]
    out.append(
        "All points verified"
        if not failed
        else f"{len(failed)} point(s) FAILED (marked !); first: {_mib(failed[0].chunk_bytes)}"
        f" x {failed[0].num_workers} workers: {failed[0].error}"
    )
    out.append("Units: GiB/s = 2^30 bytes per second; median of the timed runs per point")
    return "\n".join(out)


def sweep_json(points: Sequence[SweepPoint], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of ``respkv sweep`` (schema ``respkv.sweep/1``)."""
    doc: dict[str, Any] = {
        "schema": SWEEP_SCHEMA,
        "units": {"bytes_per_s": "bytes per second", "seconds": "wall-clock seconds"},
        "points": [
            {
                "chunk_bytes": p.chunk_bytes,
                "num_workers": p.num_workers,
                "num_keys": p.num_keys,
                "set_seconds": list(p.set_seconds),
                "get_seconds": list(p.get_seconds),
                "set_bytes_per_s": p.set_bytes_per_s if p.verified else None,
                "get_bytes_per_s": p.get_bytes_per_s if p.verified else None,
                "verified": p.verified,
                "error": p.error,
            }
            for p in points
        ],
        "passed": all(p.verified for p in points),
    }
    doc.update(extra or {})
    return doc


PLOT_HINT: Final = "the plot needs matplotlib: pip install 'respkv[plot]'"


def check_plotting() -> None:
    """Raise ImportError with :data:`PLOT_HINT` when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{PLOT_HINT} ({exc})") from exc


def plot_sweep(points: Sequence[SweepPoint], path: str, title: str) -> None:
    """Write a PNG: throughput against chunk size, one line per worker count, SET and GET."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workers = sorted({p.num_workers for p in points})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, op in zip(axes, ("SET", "GET"), strict=True):
        for w in workers:
            series = sorted(
                (p for p in points if p.num_workers == w and p.verified),
                key=lambda p: p.chunk_bytes,
            )
            xs = [p.chunk_bytes / MIB for p in series]
            ys = [(p.set_bytes_per_s if op == "SET" else p.get_bytes_per_s) / GIB for p in series]
            ax.plot(xs, ys, marker="o", label=f"{w} worker{'s' if w > 1 else ''}")
        ax.set_xscale("log", base=2)
        ticks = sorted({p.chunk_bytes / MIB for p in points})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel("chunk size (MiB)")
        ax.set_title(f"Batch {op}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("GiB/s (2^30 bytes per second)")
    axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass(frozen=True)
class _Plan:
    """What one ``respkv sweep`` will measure, checked before any server is contacted."""

    chunk_sizes: list[int]
    workers: list[int]
    total_bytes: int
    min_keys: int

    @property
    def points(self) -> int:
        return len(self.chunk_sizes) * len(self.workers)


def _plan(args: argparse.Namespace) -> _Plan:
    chunk_sizes = [chunk_bytes(c) for c in (args.chunk_mb or SWEEP_CHUNKS_MIB)]
    workers = list(args.workers or SWEEP_WORKERS)
    if not chunk_sizes or not workers:
        raise CliError("--chunk-mb and --workers need at least one value", EXIT_USAGE)
    check_workers(workers)
    check_output_path(args.json, "--json")
    check_output_path(args.plot, "--plot")
    if args.plot:
        try:
            check_plotting()
        except ImportError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    total = round(args.total_mb * MIB)
    min_keys = args.num_keys if args.num_keys is not None else max(workers)
    if args.num_keys is not None:
        total = 1  # a fixed key count: num_keys chunks at every size
    biggest = max(c * sweep_keys(c, total, min_keys) for c in chunk_sizes)
    named = named_by(args) is not None
    check_memory(biggest * (2 if named else 3), "this sweep")
    return _Plan(chunk_sizes, workers, total, min_keys)


def _on_point(done: int, count: int, p: SweepPoint) -> None:
    """One progress line per point on stderr; a failed point shows its failure."""
    what = f"{p.chunk_bytes / MIB:g} MiB x {p.num_workers} workers"
    if p.verified:
        text = (
            f"{what}: SET {p.set_bytes_per_s / GIB:.2f} GiB/s, "
            f"GET {p.get_bytes_per_s / GIB:.2f} GiB/s, ok"
        )
    else:
        text = f"{what}: FAILED: {p.error}"
    sys.stderr.write(f"{bar(done, count)} {done}/{count} {text}\n")
    sys.stderr.flush()


def cmd_sweep(args: argparse.Namespace) -> int:
    plan = _plan(args)
    info = check_backend(args.backend)
    with server(args) as target:
        print(
            f"respkv sweep: {plan.points} points ({len(plan.chunk_sizes)} chunk sizes x "
            f"{len(plan.workers)} worker counts), {args.repeat} timed + {args.warmup} warmup "
            "runs each; a line per point follows",
            file=sys.stderr,
            flush=True,
        )

        def connect(n: int) -> Client:
            return open_client(target.options.replace(num_workers=n), args.backend)

        points = run_sweep(
            connect,
            plan.chunk_sizes,
            plan.workers,
            total_bytes=plan.total_bytes,
            min_keys=plan.min_keys,
            repeat=args.repeat,
            warmup=args.warmup,
            on_point=_on_point,
        )
    server_desc = target.embedded or target.options.address
    if args.json != "-":
        print(f"Sweep: {server_desc}, backend {info.name}")
        print(format_sweep(points))
    if args.json is not None:
        extra = {
            "server": {
                "address": target.options.address,
                "embedded": target.embedded is not None,
                "software": target.embedded,
                "named_by": target.source or None,
            },
            "backend": {"name": info.name, "requested": info.requested, "reason": info.reason},
        }
        write_json(sweep_json(points, extra), args.json)
    if args.plot:
        try:
            plot_sweep(points, args.plot, f"respkv sweep: {server_desc}, {info.name} backend")
        except OSError as exc:
            raise CliError(f"cannot write the plot {args.plot}: {exc}", EXIT_USAGE) from None
        print(f"respkv sweep: plot written to {args.plot}", file=sys.stderr)
    return EXIT_OK if all(p.verified for p in points) else EXIT_FAILED
