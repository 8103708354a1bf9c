"""The measurements behind ``respkv bench`` and ``respkv sweep``.

One *run* stores ``num_keys`` chunks of ``chunk_bytes`` each with one batch SET, reads
them back with one batch GET into preallocated buffers, checks every byte, and asks
EXISTS for all keys; ``warmup`` untimed runs come first, ``repeat`` timed runs follow and
the median is reported. This is the shape of LMCache's reference benchmark, whose
output format ``respkv bench`` keeps line for line, so figures from both tools can be put
side by side.

Data. Every chunk is distinct: one random block per run (``os.urandom``), copied per key
and stamped with the key's index in the first 8 bytes of every 4 KiB page. A value
delivered under the wrong key, a page left unwritten or a stale value from an earlier
run all fail the byte-for-byte check. Before each timed GET the destination buffers are
zeroed, so a GET that writes nothing cannot pass on the previous run's bytes. No numpy
is needed: ``bytearray`` copies and comparisons are ``memcpy``/``memcmp``.

Units. Like the reference, sizes are binary: ``KB`` is 1024 bytes and ``GB`` is 2**30
bytes (GiB); the text output says so and the JSON output carries raw bytes and seconds.

Keys are ``respkv-bench:<random token>:<index>``, unique per invocation, and are deleted
at the end so a run against a shared server leaves nothing behind.
"""

from __future__ import annotations

import os
import statistics
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from respkv._contract import BatchResult, KeyStatus

if TYPE_CHECKING:
    from respkv.client import Client

__all__ = [
    "GIB",
    "MIB",
    "BenchConfig",
    "BenchReport",
    "OpStats",
    "format_report",
    "make_chunks",
    "report_json",
    "run_bench",
    "verify",
]

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB
#: Distance between two index stamps inside a chunk: one per memory page.
STAMP_STRIDE: Final = 4096
#: Width of the dashed rules in the text report (the reference's width).
RULE_WIDTH: Final = 60
#: The text report's title, kept from the reference benchmark.
TITLE: Final = "Redis RESP Client Benchmark"
#: Schema name and version of the JSON report (bump on incompatible changes).
JSON_SCHEMA: Final = "respkv.bench/1"
UNITS_NOTE: Final = "Units: KB = 1024 bytes, GB = 2^30 bytes (GiB), as the reference counts"


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark measures."""

    chunk_bytes: int
    num_keys: int
    num_workers: int
    repeat: int = 1
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk size must be at least 1 byte, got {self.chunk_bytes}")
        if self.num_keys < 1:
            raise ValueError(f"number of keys must be >= 1, got {self.num_keys}")
        if self.repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {self.repeat}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")

    @property
    def total_bytes(self) -> int:
        return self.chunk_bytes * self.num_keys


@dataclass
class OpStats:
    """Timings and per-key outcome of one operation over all timed runs."""

    op: str
    keys: int
    bytes: int = 0
    seconds: list[float] = field(default_factory=list)
    failed_keys: int = 0
    first_error: str | None = None
    hits: int = 0
    mismatched_keys: int = 0
    first_mismatch: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.median_s if self.seconds and self.median_s > 0 else 0.0

    @property
    def ops_per_s(self) -> float:
        return self.keys / self.median_s if self.seconds and self.median_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed_keys == 0 and self.mismatched_keys == 0

    def record_failures(self, result: BatchResult) -> None:
        """Count the failed keys of one batch (the worst run is kept)."""
        failed = len(result.failed)
        if failed > self.failed_keys:
            self.failed_keys = failed
            self.first_error = result.error


@dataclass
class BenchReport:
    """Everything one ``respkv bench`` run found."""

    config: BenchConfig
    address: str
    backend: str
    set: OpStats
    get: OpStats
    exists: OpStats

    @property
    def passed(self) -> bool:
        return (
            self.set.ok
            and self.get.ok
            and self.exists.ok
            and self.exists.hits == self.config.num_keys
        )

    def failures(self) -> list[str]:
        """One line per problem, for the end of the text report."""
        lines = [
            f"{stats.op} failed: {stats.first_error}"
            for stats in (self.set, self.get, self.exists)
            if stats.failed_keys
        ]
        if self.get.mismatched_keys > self.get.failed_keys:
            lines.append(
                f"GET verification failed: {self.get.mismatched_keys} of {self.get.keys} "
                f"values are not what was stored ({self.get.first_mismatch})"
            )
        if not self.exists.failed_keys and self.exists.hits != self.config.num_keys:
            lines.append(f"EXISTS found {self.exists.hits} of {self.config.num_keys} keys")
        return lines


def make_chunks(num_keys: int, chunk_bytes: int) -> list[bytearray]:
    """``num_keys`` distinct chunks: one random block, stamped per key on every page."""
    base = os.urandom(chunk_bytes)
    chunks = []
    for index in range(num_keys):
        buf = bytearray(base)
        stamp_chunk(buf, index)
        chunks.append(buf)
    return chunks


def stamp_chunk(buf: bytearray, index: int) -> None:
    """Write ``index + 1`` into the first 8 bytes of every page of ``buf``."""
    stamp = index + 1
    words = len(buf) // 8
    if words == 0:
        buf[:] = stamp.to_bytes(8, "little")[: len(buf)]
        return
    view = memoryview(buf)[: words * 8].cast("Q")
    step = STAMP_STRIDE // 8
    count = len(range(0, words, step))
    view[::step] = array("Q", [stamp]) * count
    view.release()


def verify(expected: Sequence[bytearray], got: Sequence[bytearray], result: BatchResult) -> int:
    """How many keys are not a verified hit: a failure status, or bytes that differ."""
    return sum(
        1
        for want, have, status in zip(expected, got, result.statuses, strict=True)
        if status is not KeyStatus.OK or want != have
    )


def first_mismatch(
    expected: Sequence[bytearray], got: Sequence[bytearray], result: BatchResult
) -> str | None:
    """A readable description of the first key that did not verify."""
    for i, (want, have, status) in enumerate(zip(expected, got, result.statuses, strict=True)):
        if status is not KeyStatus.OK:
            return f"key {i}: {status.name}"
        if want != have:
            offset = next(j for j, (a, b) in enumerate(zip(want, have, strict=True)) if a != b)
            return f"key {i}: bytes differ from offset {offset}"
    return None


def bench_keys(num_keys: int, token: str | None = None) -> list[str]:
    """Unique key names for one invocation."""
    token = token or os.urandom(6).hex()
    return [f"respkv-bench:{token}:{i}" for i in range(num_keys)]


Progress = Callable[[str], None]


def run_bench(
    client: Client,
    config: BenchConfig,
    *,
    chunks: list[bytearray] | None = None,
    keys: list[str] | None = None,
    dst: list[bytearray] | None = None,
    progress: Progress | None = None,
    with_exists: bool = True,
) -> BenchReport:
    """Run ``warmup`` + ``repeat`` rounds of SET, GET (verified) and EXISTS.

    ``chunks``, ``keys`` and ``dst`` may be passed in to reuse buffers across calls
    (``respkv sweep``); the keys are deleted at the end either way.
    """
    n = config.num_keys
    src = chunks if chunks is not None else make_chunks(n, config.chunk_bytes)
    keys = keys if keys is not None else bench_keys(n)
    dst = dst if dst is not None else [bytearray(config.chunk_bytes) for _ in range(n)]
    if not len(src) == len(keys) == len(dst) == n:
        raise ValueError("chunks, keys and dst must each have num_keys entries")
    zero = bytes(config.chunk_bytes)
    total = config.total_bytes
    stats_set = OpStats("SET", n, total)
    stats_get = OpStats("GET", n, total)
    stats_exists = OpStats("EXISTS", n)
    exists_hits: list[int] = []
    rounds = config.warmup + config.repeat
    try:
        for r in range(rounds):
            timed = r >= config.warmup
            label = f"run {r - config.warmup + 1}/{config.repeat}" if timed else "warmup"
            if progress is not None:
                progress(label)
            t0 = time.perf_counter()
            result = client.batch_set(keys, src)
            elapsed = time.perf_counter() - t0
            stats_set.record_failures(result)
            if timed:
                stats_set.seconds.append(elapsed)

            for buf in dst:
                buf[:] = zero
            t0 = time.perf_counter()
            result = client.batch_get(keys, dst)
            elapsed = time.perf_counter() - t0
            stats_get.record_failures(result)
            bad = verify(src, dst, result)
            if bad > stats_get.mismatched_keys:
                stats_get.mismatched_keys = bad
                stats_get.first_mismatch = first_mismatch(src, dst, result)
            if timed:
                stats_get.seconds.append(elapsed)

            if with_exists:
                t0 = time.perf_counter()
                result = client.batch_exists(keys)
                elapsed = time.perf_counter() - t0
                stats_exists.record_failures(result)
                if timed:
                    stats_exists.seconds.append(elapsed)
                    exists_hits.append(sum(result.hits))
    finally:
        cleanup(client, keys)
    # The worst timed run counts; without EXISTS there is nothing to find missing.
    stats_exists.hits = min(exists_hits) if exists_hits else n
    return BenchReport(
        config, client.options.address, client.backend.name, stats_set, stats_get, stats_exists
    )


def cleanup(client: Client, keys: Sequence[str]) -> None:
    """Delete the benchmark's keys; a failure here must not hide the results."""
    if client.closed:
        return
    try:
        client.batch_delete(keys, timeout=60)
    except Exception:  # best effort: the results matter more
        pass


# --------------------------------------------------------------------------- output


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f}"


def _kb(nbytes: int) -> str:
    kb = nbytes / KIB
    return f"{kb:.0f}" if kb == int(kb) else f"{kb:.1f}"


def format_report(report: BenchReport, *, backend_line: str | None = None) -> str:
    """The reference benchmark's text output (plus the backend and unit lines)."""
    cfg = report.config
    rule = "-" * RULE_WIDTH
    lines = [
        TITLE,
        f"Server: {report.address}, Workers: {cfg.num_workers}",
        f"Chunk size: {_kb(cfg.chunk_bytes)}KB, Keys: {cfg.num_keys}",
        backend_line or f"Backend: {report.backend}",
    ]
    if cfg.repeat > 1 or cfg.warmup:
        lines.append(f"Runs: {cfg.repeat} timed (median shown), {cfg.warmup} warmup")
    lines += [
        UNITS_NOTE,
        rule,
        f"Batch SET: {_gib(report.set.bytes_per_s)} GB/s ({_gib(report.set.bytes)} GB written)",
        f"Batch GET: {_gib(report.get.bytes_per_s)} GB/s ({_gib(report.get.bytes)} GB read)",
        f"Batch EXISTS: {report.exists.ops_per_s:.0f} ops/s "
        f"({report.exists.hits}/{cfg.num_keys} hits)",
        rule,
    ]
    if report.passed:
        lines.append("All tests passed")
    else:
        lines += [f"FAILED: {line}" for line in report.failures()]
    return "\n".join(lines)


def _op_json(stats: OpStats) -> dict[str, Any]:
    out: dict[str, Any] = {
        "keys": stats.keys,
        "seconds": stats.seconds,
        "median_s": stats.median_s if stats.seconds else None,
        "failed_keys": stats.failed_keys,
        "first_error": stats.first_error,
    }
    if stats.bytes:
        out["bytes"] = stats.bytes
        out["bytes_per_s"] = stats.bytes_per_s
    else:
        out["ops_per_s"] = stats.ops_per_s
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
        "units": {"bytes_per_s": "bytes per second", "seconds": "wall-clock seconds"},
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


# --------------------------------------------------------------------------- sweep

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


def sweep_keys(chunk_bytes: int, total_bytes: int, min_keys: int) -> int:
    """Keys per point: ``total_bytes`` worth of chunks, at least ``min_keys``."""
    return max(min_keys, -(-total_bytes // chunk_bytes))


def run_sweep(
    open_client: Callable[[int], Client],
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

    ``open_client(num_workers)`` returns a client; it is closed after its points. The
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
            with open_client(w) as client:
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
                rate = p.set_bytes_per_s if op == "SET" else p.get_bytes_per_s
                mark = "" if p.verified else "!"
                cells.append(f"{rate / GIB:>7.2f}{mark or ' '}")
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
                "set_bytes_per_s": p.set_bytes_per_s,
                "get_bytes_per_s": p.get_bytes_per_s,
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
            series = sorted((p for p in points if p.num_workers == w), key=lambda p: p.chunk_bytes)
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
