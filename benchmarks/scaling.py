"""Worker scaling side by side: respkv against LMCache's connector at 1..N workers.

:mod:`benchmarks.side_by_side` compares the contenders at one worker count; this script
walks a grid of chunk sizes x worker counts (issue 13), and for every cell runs the
contenders alternating in one process (the order rotated every round), each round:
SET to fresh keys (FLUSHALL untimed just before), SET overwriting them, GET (verified
byte for byte, untimed). It reports medians, the spread over rounds, and ratios against
LMCache at the same worker count.

Contenders are named on the command line (``--contenders``), each
``NAME[@unix][:field=value,...]``:

* ``native`` / ``python``: respkv's backends; ``@unix`` connects through the server's
  unix socket instead of loopback TCP; ``:window_values=1`` and the like replace
  :class:`~respkv._options.ConnectionOptions` fields (experiments); a contender's own
  ``num_workers`` wins over the cell's, so worker counts can alternate within one cell;
* ``lmcache``: LMCache's own native client (``lmcache.lmcache_redis`` from the released
  wheel, the contender class of :mod:`benchmarks.side_by_side`; ``lmcache:num_workers=8``
  fixes its worker count). When ``lmcache`` does
  not import, ``--lmcache-site DIR`` (or ``RESPKV_LMCACHE_SITE``) names a site-packages
  directory that has it, e.g. the ``nox -s lmcache`` virtualenv's; it is appended to
  ``sys.path``, so respkv itself still comes from this interpreter.

``--probe`` adds, per contender and operation, what the client and the server spent:
client CPU (``time.process_time``: all threads), context switches (``getrusage``, all
threads), and the server's CPU, context switches and minor page faults
(``/proc/<pid>/stat`` and ``/proc/<pid>/task/*/status``, the throwaway server only).

The throwaway server is ``redis-server`` (``--server-binary`` picks another, e.g.
Valkey 8's ``valkey-server``), with ``--io-threads N`` when given; it also listens on a
unix socket in a private directory when a contender needs one.

Run: ``python -m benchmarks.scaling --help``. Units: GB = 1e9 bytes (rates in GB/s;
issue 13 states its targets in these units); MiB = 2^20 bytes.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from benchmarks._common import (
    MIB,
    Table,
    check_equal,
    flush,
    machine,
    make_values,
    median,
    rotated,
    server_version,
    write_json,
)
from benchmarks.side_by_side import BulkContender, LMCacheContender, RespkvContender
from respkv._options import ConnectionOptions
from respkv.testing.servers import LocalServer, recommended_args

#: Bytes per batch in every cell: big enough that one batch lasts 0.1-0.3 s at the
#: 1.5-4 GB/s this machine does (timer and wake-up noise well below 1 %), small enough
#: that the values, the GET buffers and the server's copy fit a small machine twice.
DEFAULT_BATCH_MIB: Final = 256
DEFAULT_SIZES: Final = "0.5,1,4"
DEFAULT_WORKERS: Final = "1,2,4,8"
DEFAULT_CONTENDERS: Final = ("native", "python", "lmcache")
LMCACHE_SITE_ENV: Final = "RESPKV_LMCACHE_SITE"
OPS: Final = ("SET_FRESH", "SET", "GET")
OP_LABEL: Final = {"SET_FRESH": "SET fresh", "SET": "SET overwrite", "GET": "GET"}
GB: Final = 1e9


# --------------------------------------------------------------------------- contenders


@dataclass(frozen=True)
class Spec:
    """One contender as named on the command line."""

    text: str
    kind: str  # "native", "python" or "lmcache"
    unix: bool
    changes: dict[str, int | float]

    @property
    def label(self) -> str:
        base = "LMCache native" if self.kind == "lmcache" else f"respkv {self.kind}"
        extra = "".join(
            [" unix" if self.unix else "", *(f" {k}={v}" for k, v in self.changes.items())]
        )
        return base + extra


def parse_spec(text: str) -> Spec:
    name, _, fields = text.partition(":")
    kind, _, transport = name.partition("@")
    if kind not in DEFAULT_CONTENDERS:
        raise SystemExit(f"contender {text!r}: name must be one of {', '.join(DEFAULT_CONTENDERS)}")
    if transport not in ("", "unix"):
        raise SystemExit(f"contender {text!r}: only @unix is known")
    if kind == "lmcache" and (transport or fields.partition("=")[0] not in ("", "num_workers")):
        raise SystemExit(f"contender {text!r}: LMCache's client takes TCP and num_workers only")
    changes: dict[str, int | float] = {}
    for item in filter(None, fields.split(",")):
        key, _, value = item.partition("=")
        if key not in ConnectionOptions.__dataclass_fields__:
            raise SystemExit(f"contender {text!r}: {key!r} is no ConnectionOptions field")
        changes[key] = float(value) if "." in value else int(value)
    return Spec(text, kind, transport == "unix", changes)


def load_lmcache(site: str | None) -> Any:
    """``lmcache.lmcache_redis``, or None with the reason printed."""
    if site:
        sys.path.append(site)
    try:
        module = importlib.import_module("lmcache.lmcache_redis")
    except ImportError as exc:
        hint = "" if site else f" (--lmcache-site or {LMCACHE_SITE_ENV} may name a venv's)"
        print(f"(LMCache native skipped: lmcache.lmcache_redis does not load: {exc}{hint})")
        return None
    version = getattr(importlib.import_module("lmcache"), "__version__", "?")
    print(f"(LMCache native: lmcache {version} from {os.path.dirname(module.__file__ or '?')})")
    return module


def make_contender(
    spec: Spec, tcp: ConnectionOptions, unix_path: str | None, workers: int, lmcache: Any
) -> BulkContender:
    # A contender's own num_workers wins over the cell's: worker counts can then be
    # compared alternating in one cell, not only across cells measured one after another.
    workers = int(spec.changes.get("num_workers", workers))
    if spec.kind == "lmcache":
        contender: BulkContender = LMCacheContender(lmcache, tcp, workers)
        contender.name = spec.label
        return contender
    options = tcp.replace(unix_path=unix_path) if spec.unix else tcp
    if spec.changes:
        options = options.replace(**spec.changes)
    contender = RespkvContender(options, spec.kind, workers)
    contender.name = spec.label
    return contender


# --------------------------------------------------------------------------- probes


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


# --------------------------------------------------------------------------- runs


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


def run_cell(
    contenders: Sequence[BulkContender],
    options: ConnectionOptions,
    cell: Cell,
    rounds: int,
    server_pid: int | None,
) -> None:
    keys = [f"scl:{cell.chunk_bytes}:{i}" for i in range(cell.num_keys)]
    src = make_values(cell.num_keys, cell.chunk_bytes)
    dst = [bytearray(cell.chunk_bytes) for _ in range(cell.num_keys)]
    zero = bytes(cell.chunk_bytes)
    for c in contenders:  # untimed warm-up: connections made, threads running
        c.set(keys, src)
    for r in range(rounds):
        for who in rotated(contenders, r):
            flush(options)
            fresh, _ = measured(partial(who.set, keys, src), server_pid)
            over, _ = measured(partial(who.set, keys, src), server_pid)
            for buf in dst:
                buf[:] = zero
            got, finish = measured(partial(who.get, keys, dst), server_pid)
            finish()
            check_equal(src, dst, who.name)
            per_op = cell.samples.setdefault(who.name, {})
            for op, s in zip(OPS, (fresh, over, got), strict=True):
                per_op.setdefault(op, []).append(s)


# --------------------------------------------------------------------------- server


@contextmanager
def throwaway_server(
    binary: str | None, io_threads: int | None, unix: bool
) -> Iterator[tuple[ConnectionOptions, str | None, int | None]]:
    """A local server: its TCP options, its unix socket path (or None), its pid."""
    if io_threads is None:
        args = recommended_args()
    else:  # persistence off as recommended_args(), the io-threads as asked
        args = ["--save", "", "--appendonly", "no", "--io-threads", str(io_threads)]
        if "valkey" not in os.path.basename(binary or "redis-server"):
            args += ["--io-threads-do-reads", "yes"]  # Redis 6/7 reads on one thread else
    sock_dir = tempfile.mkdtemp(prefix="respkv-scaling-")
    path = os.path.join(sock_dir, "server.sock") if unix else None
    if path is not None:
        args += ["--unixsocket", path, "--unixsocketperm", "700"]
    try:
        with LocalServer(binary=binary, args=args) as server:
            assert server.process is not None
            yield ConnectionOptions(host=server.host, port=server.port), path, server.process.pid
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


# --------------------------------------------------------------------------- report


def fmt_rate(cell: Cell, name: str, op: str) -> str:
    rate = cell.rate(name, op)
    if math.isnan(rate):  # no samples
        return "-"
    return f"{rate / GB:.2f} ±{cell.spread(name, op) * 50:.0f}%"


def report(cells: Sequence[Cell], names: Sequence[str], probe: bool) -> list[dict[str, Any]]:
    """Print one table per chunk size and operation; return the ratio records."""
    ratios: list[dict[str, Any]] = []
    # The baseline of the ratios: the first LMCache contender named.
    lm = next((n for n in names if n.startswith(LMCacheContender.name)), "")
    for chunk in sorted({c.chunk_bytes for c in cells}):
        row_cells = sorted((c for c in cells if c.chunk_bytes == chunk), key=lambda c: c.workers)
        first = row_cells[0]
        print(
            f"\n{chunk / MIB:g} MiB x {first.num_keys} keys ({first.total / GB:.2f} GB per "
            f"batch): GB/s, median ±half the spread over rounds; x = / {lm or 'no LMCache'}"
        )
        for op in OPS:
            headers = [OP_LABEL[op], *(f"{c.workers} w" for c in row_cells)]
            rows: list[list[str]] = []
            for name in names:
                row = [name]
                for c in row_cells:
                    text = fmt_rate(c, name, op)
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
                                "vs_lmcache": x,
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
        headers = ["client CPU-s/GB SET / GET", *(f"{c.workers} w" for c in row_cells)]
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


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="use this server (TCP contenders only)")
    parser.add_argument("--server-binary", help="redis-server (default) or valkey-server")
    parser.add_argument("--io-threads", type=int, help="the throwaway server's io-threads")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="chunk MiB, comma-separated")
    parser.add_argument("--workers", default=DEFAULT_WORKERS, help="worker counts")
    parser.add_argument("--batch-mib", type=float, default=DEFAULT_BATCH_MIB)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--contenders", nargs="+", default=list(DEFAULT_CONTENDERS), help="see the module doc"
    )
    parser.add_argument("--lmcache-site", default=os.environ.get(LMCACHE_SITE_ENV))
    parser.add_argument("--probe", action="store_true", help="client/server CPU, ctxsw, faults")
    parser.add_argument("--json", metavar="PATH", help="also write the samples as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    specs = [parse_spec(t) for t in args.contenders]
    lmcache = load_lmcache(args.lmcache_site) if any(s.kind == "lmcache" for s in specs) else None
    specs = [s for s in specs if s.kind != "lmcache" or lmcache is not None]
    sizes = [float(s) for s in args.sizes.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    needs_unix = any(s.unix for s in specs)
    info = machine()
    t0 = time.monotonic()
    cells: list[Cell] = []
    with server_or_url(args, needs_unix) as (options, unix_path, pid):
        version = server_version(options)
        print(
            f"scaling on {info['cpus']} CPUs ({info['cpu_model']}), {version}"
            f"{f' io-threads {args.io_threads}' if args.io_threads else ''}, "
            f"{args.rounds} rounds alternating, load {os.getloadavg()[0]:.2f}"
        )
        for chunk_mib in sizes:
            chunk = round(chunk_mib * MIB)
            keys = max(1, round(args.batch_mib * MIB / chunk))
            for workers in worker_counts:
                cell = Cell(chunk, keys, workers)
                contenders = [
                    make_contender(s, options, unix_path, workers, lmcache) for s in specs
                ]
                try:
                    run_cell(contenders, options, cell, args.rounds, pid)
                finally:
                    for c in contenders:
                        c.close()
                cells.append(cell)
                print(
                    f"  {chunk_mib:g} MiB x {workers} workers done "
                    f"({time.monotonic() - t0:.0f} s, load {os.getloadavg()[0]:.2f})",
                    file=sys.stderr,
                )
    names = [s.label for s in specs]
    ratios = report(cells, names, args.probe)
    print(f"\n({time.monotonic() - t0:.0f} s; load average now {os.getloadavg()[0]:.2f})")
    write_json(
        args.json,
        {
            "benchmark": "scaling",
            "machine": info,
            "server": version,
            "io_threads": args.io_threads,
            "rounds": args.rounds,
            "contenders": names,
            "cells": [cell_json(c) for c in cells],
            "ratios": ratios,
        },
    )
    return 0


@contextmanager
def server_or_url(
    args: argparse.Namespace, unix: bool
) -> Iterator[tuple[ConnectionOptions, str | None, int | None]]:
    if args.url:
        if unix:
            raise SystemExit("@unix contenders need the throwaway server (no --url)")
        import respkv.config

        yield respkv.config.resolve(args.url), None, None
        return
    with throwaway_server(args.server_binary, args.io_threads, unix) as found:
        yield found


if __name__ == "__main__":
    sys.exit(main())
