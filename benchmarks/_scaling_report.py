"""The records and tables of :mod:`benchmarks.scaling`: samples, cells, the report.

A :class:`Sample` is a set of counters read before and after one timed batch: wall
time, the client process's CPU time (``time.process_time``: all threads) and context
switches (``getrusage``), and, for a throwaway server whose pid is known, the server's
CPU time (the scheduler's nanosecond ``schedstat`` of every thread: ``stat``'s 10 ms
ticks are too coarse for a 0.1 s batch), context switches and minor page faults. A
:class:`Cell` holds every contender's samples for one chunk size and worker count.
Rates are GB/s with GB = 1e9 bytes (issue 13 states its targets in these units).

Medians of each contender's rounds hide how the rounds pair up, and on a shared 2-core
machine one slow moment moves a whole round. Every round runs every contender once (the
order rotated), so round ``i`` of one contender and round ``i`` of its baseline ran side
by side: :func:`paired` takes the per-round ratios, their median, a 90 % bootstrap
interval of that median (fixed seed: the same samples print the same interval) and how
many rounds the contender won. :func:`print_paired` lists the cells where the interval
lies wholly below or above 1: measurably behind or ahead, rather than inside the noise.
"""

from __future__ import annotations

import math
import os
import random
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from benchmarks._common import MIB, Table, median

__all__ = [
    "GB",
    "OPS",
    "OP_LABEL",
    "Cell",
    "Paired",
    "Sample",
    "cell_json",
    "measured",
    "paired",
    "print_paired",
    "report",
]

OPS: Final = ("SET_FRESH", "SET", "GET")
OP_LABEL: Final = {"SET_FRESH": "SET fresh", "SET": "SET overwrite", "GET": "GET"}
GB: Final = 1e9
#: Resamples of the bootstrap interval, its coverage, and the fewest rounds it is worth
#: computing for (below that the interval is not printed).
BOOTSTRAP: Final = 2000
COVERAGE: Final = 0.90
MIN_PAIRED_ROUNDS: Final = 5


@dataclass(frozen=True)
class Sample:
    """Counters at one moment: the client's and (when known) the server's."""

    wall: float
    cpu: float
    ctxsw: int
    server_cpu: float
    server_ctxsw: int
    server_faults: int

    def __sub__(self, other: Sample) -> Sample:
        return Sample(
            self.wall - other.wall,
            self.cpu - other.cpu,
            self.ctxsw - other.ctxsw,
            self.server_cpu - other.server_cpu,
            self.server_ctxsw - other.server_ctxsw,
            self.server_faults - other.server_faults,
        )


def _server_counters(pid: int | None) -> tuple[float, int, int]:
    """The server's CPU seconds (all threads, from the scheduler's nanosecond
    ``schedstat``: ``stat``'s 10 ms ticks are too coarse for a 0.1 s batch), context
    switches, minor faults."""
    if pid is None:
        return 0.0, 0, 0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            faults = int(f.read().rsplit(")", 1)[1].split()[7])  # minflt
        cpu_ns = switches = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as f:
                cpu_ns += int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{task}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                        switches += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0, 0, 0
    return cpu_ns / 1e9, switches, faults


def sample(server_pid: int | None) -> Sample:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu, switches, faults = _server_counters(server_pid)
    return Sample(
        time.perf_counter(),
        time.process_time(),
        usage.ru_nvcsw + usage.ru_nivcsw,
        cpu,
        switches,
        faults,
    )


def measured(fn: Callable[[], Any], server_pid: int | None) -> tuple[Sample, Any]:
    before = sample(server_pid)
    result = fn()
    return sample(server_pid) - before, result


@dataclass
class Cell:
    """One chunk size x worker count: every contender's samples per operation."""

    chunk_bytes: int
    num_keys: int
    workers: int
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.chunk_bytes * self.num_keys

    def rates(self, name: str, op: str) -> list[float]:
        return [self.total / s.wall for s in self.samples.get(name, {}).get(op, [])]

    def rate(self, name: str, op: str) -> float:
        return median(self.rates(name, op))

    def spread(self, name: str, op: str) -> float:
        """(max - min) / median of the rates, over the rounds."""
        rates = self.rates(name, op)
        return (max(rates) - min(rates)) / median(rates) if rates else float("nan")

    def per_gb(self, name: str, op: str, what: str) -> float:
        """Median of a counter (``cpu``, ``server_cpu``, ...) per GB moved."""
        values = [getattr(s, what) for s in self.samples.get(name, {}).get(op, [])]
        return median(values) / (self.total / GB) if values else float("nan")


@dataclass(frozen=True)
class Paired:
    """A contender against its baseline over rounds run side by side."""

    ratios: tuple[float, ...]  # per round: contender rate / baseline rate
    median: float
    low: float  # the bootstrap interval of the median (nan below MIN_PAIRED_ROUNDS)
    high: float
    wins: int  # rounds where the contender was faster

    @property
    def verdict(self) -> str:
        if math.isnan(self.low):
            return "too few rounds"
        if self.high < 1.0:
            return "behind"
        if self.low > 1.0:
            return "ahead"
        return "level"


def paired(cell: Cell, name: str, base: str, op: str, seed: int = 13) -> Paired | None:
    """``name`` against ``base`` round by round in ``cell`` (None without samples)."""
    mine, theirs = cell.rates(name, op), cell.rates(base, op)
    if not mine or len(mine) != len(theirs):
        return None
    ratios = tuple(a / b for a, b in zip(mine, theirs, strict=True))
    low = high = math.nan
    if len(ratios) >= MIN_PAIRED_ROUNDS:
        rng = random.Random(seed)
        meds = sorted(median(rng.choices(ratios, k=len(ratios))) for _ in range(BOOTSTRAP))
        tail = (1 - COVERAGE) / 2
        low, high = meds[int(tail * BOOTSTRAP)], meds[int((1 - tail) * BOOTSTRAP) - 1]
    return Paired(ratios, median(list(ratios)), low, high, sum(r > 1 for r in ratios))


def print_paired(
    cells: Sequence[Cell], names: Sequence[str], baseline: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Per contender: how many cells are behind / level / ahead of its baseline, paired
    by round; the cells behind or ahead listed. Returns one record per cell and op."""
    records: list[dict[str, Any]] = []
    for name in names:
        base = baseline.get(name, name)
        if base == name:
            continue
        counts = {"behind": 0, "level": 0, "ahead": 0, "too few rounds": 0}
        listed: list[list[str]] = []
        for c in sorted(cells, key=lambda c: (c.chunk_bytes, c.workers)):
            for op in OPS:
                p = paired(c, name, base, op)
                if p is None:
                    continue
                counts[p.verdict] += 1
                records.append(
                    {
                        "chunk_bytes": c.chunk_bytes,
                        "workers": c.workers,
                        "op": op,
                        "contender": name,
                        "baseline": base,
                        "paired_median": p.median,
                        "interval": None if math.isnan(p.low) else [p.low, p.high],
                        "wins": p.wins,
                        "rounds": len(p.ratios),
                        "verdict": p.verdict,
                    }
                )
                if p.verdict in ("behind", "ahead"):
                    listed.append(
                        [
                            p.verdict,
                            f"{c.chunk_bytes / MIB:g} MiB",
                            _workers_label(c.workers),
                            OP_LABEL[op],
                            f"{p.median:.2f}x [{p.low:.2f}, {p.high:.2f}]",
                            f"{p.wins}/{len(p.ratios)}",
                        ]
                    )
        summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        print(f"\n{name} / {base}, paired by round ({COVERAGE:.0%} interval): {summary}")
        if listed:
            headers = ["", "chunk", "workers", "op", "median ratio [interval]", "won"]
            print(Table(headers, listed).render())
    return records


def _workers_label(workers: int) -> str:
    """A column's heading; 0 when every contender named its own worker count."""
    return f"{workers} w" if workers else "workers as named"


def fmt_rate(cell: Cell, name: str, op: str) -> str:
    rate = cell.rate(name, op)
    if math.isnan(rate):  # no samples
        return "-"
    return f"{rate / GB:.2f} ±{cell.spread(name, op) * 50:.0f}%"


def report(
    cells: Sequence[Cell], names: Sequence[str], baseline: Mapping[str, str], probe: bool
) -> list[dict[str, Any]]:
    """Print one table per chunk size and operation; return the ratio records.
    ``baseline[name]`` is the contender ``name`` is divided by (LMCache on its server)."""
    ratios: list[dict[str, Any]] = []
    bases = sorted(set(baseline.values()))
    shown = ", ".join(bases) if bases else "no LMCache contender"
    for chunk in sorted({c.chunk_bytes for c in cells}):
        row_cells = sorted((c for c in cells if c.chunk_bytes == chunk), key=lambda c: c.workers)
        first = row_cells[0]
        print(
            f"\n{chunk / MIB:g} MiB x {first.num_keys} keys ({first.total / GB:.2f} GB per "
            f"batch): GB/s, median ±half the spread over rounds; x = / {shown}"
        )
        for op in OPS:
            headers = [OP_LABEL[op], *(_workers_label(c.workers) for c in row_cells)]
            rows: list[list[str]] = []
            for name in names:
                row = [name]
                for c in row_cells:
                    text = fmt_rate(c, name, op)
                    lm = baseline.get(name, name)
                    base = c.rate(lm, op)
                    if name != lm and not math.isnan(base) and c.rates(name, op):
                        x = c.rate(name, op) / base
                        text += f" {x:.2f}x"
                        ratios.append(
                            {
                                "chunk_bytes": chunk,
                                "workers": c.workers,
                                "op": op,
                                "contender": name,
                                "baseline": lm,
                                "ratio": x,
                            }
                        )
                    row.append(text)
                rows.append(row)
            print(Table(headers, rows).render())
        cpu_rows = []
        for name in names:
            row = [name]
            for c in row_cells:
                set_cpu = c.per_gb(name, "SET", "cpu")
                get_cpu = c.per_gb(name, "GET", "cpu")
                row.append(f"{set_cpu:.3f} / {get_cpu:.3f}")
            cpu_rows.append(row)
        headers = ["client CPU-s/GB SET / GET", *(_workers_label(c.workers) for c in row_cells)]
        print(Table(headers, cpu_rows).render())
        if probe:
            print_probe(row_cells, names)
    return ratios


def print_probe(row_cells: Sequence[Cell], names: Sequence[str]) -> None:
    headers = [
        "probe (per GB)",
        "workers",
        "op",
        "client CPU-s",
        "client ctxsw",
        "server CPU-s",
        "server ctxsw",
        "server faults",
    ]
    rows = []
    for c in row_cells:
        for name in names:
            for op in OPS:
                rows.append(
                    [
                        name,
                        str(c.workers),
                        OP_LABEL[op],
                        f"{c.per_gb(name, op, 'cpu'):.3f}",
                        f"{c.per_gb(name, op, 'ctxsw'):,.0f}",
                        f"{c.per_gb(name, op, 'server_cpu'):.3f}",
                        f"{c.per_gb(name, op, 'server_ctxsw'):,.0f}",
                        f"{c.per_gb(name, op, 'server_faults'):,.0f}",
                    ]
                )
    print(Table(headers, rows).render())


def cell_json(c: Cell) -> dict[str, Any]:
    return {
        "chunk_bytes": c.chunk_bytes,
        "num_keys": c.num_keys,
        "workers": c.workers,
        "contenders": {
            name: {
                op: [dict(vars(s)) for s in samples]  # wall, cpu, ctxsw, server_*
                for op, samples in per_op.items()
            }
            for name, per_op in c.samples.items()
        },
    }
