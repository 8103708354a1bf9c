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
  fixes its worker count), loaded as :mod:`benchmarks._lmcache_loader` says (with its
  dependencies, or the extension alone with stand-in torch libraries). ``--lmcache-site
  DIR`` (or ``RESPKV_LMCACHE_SITE``) names a site-packages directory that has it, e.g.
  the ``nox -s lmcache`` virtualenv's; it is appended to ``sys.path``, so respkv itself
  still comes from this interpreter.

``--probe`` adds, per contender and operation, what the client and the server spent:
client CPU (``time.process_time``: all threads), context switches (``getrusage``, all
threads), and the server's CPU, context switches and minor page faults
(``/proc/<pid>/stat`` and ``/proc/<pid>/task/*/status``, the throwaway server only).

Servers. ``--servers`` names one or more throwaway servers, each ``BINARY[:io=N]``
(``redis-server``, ``valkey-server`` or a path; ``io=N`` is ``--io-threads N``). All of
them run at once, and every contender is measured against every server, alternating in
one rotated lineup: each sample starts with FLUSHALL on its own server, so the servers
take turns as the contenders do (Redis 7 against Valkey 8 with and without io-threads
in one run, issue 13 item 5). Ratios divide by LMCache on the same server. Each server
also listens on a unix socket in its private directory (``LocalServer(unix_socket=
True)``). ``--url`` uses a running server instead (TCP contenders only, no probes).

Run: ``python -m benchmarks.scaling --help``. Units: GB = 1e9 bytes (rates in GB/s;
issue 13 states its targets in these units); MiB = 2^20 bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from benchmarks._common import MIB, check_equal, flush, machine, make_values, rotated, write_json
from benchmarks._common import server_version as _server_version
from benchmarks._lmcache_loader import load_lmcache_redis
from benchmarks._scaling_report import OPS, Cell, cell_json, measured, print_paired, report
from benchmarks.side_by_side import BulkContender, LMCacheContender, RespkvContender
from respkv._options import ConnectionOptions
from respkv.testing.servers import LocalServer, recommended_args

#: Bytes per batch in every cell: big enough that one batch lasts 0.1-0.3 s at the
#: 1.5-7 GB/s this machine does (timer and wake-up noise well below 1 %), small enough
#: that the values, the GET buffers and every server's copy fit a small machine.
DEFAULT_BATCH_MIB: Final = 256
DEFAULT_SIZES: Final = "0.5,1,4"
DEFAULT_WORKERS: Final = "1,2,4,8"
DEFAULT_CONTENDERS: Final = ("native", "python", "lmcache")
LMCACHE_SITE_ENV: Final = "RESPKV_LMCACHE_SITE"

__all__ = ["main", "parse_spec"]


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
    """``lmcache_redis`` (see :mod:`benchmarks._lmcache_loader`), or None with the
    reason printed."""
    module, how = load_lmcache_redis(site)
    if module is None:
        hint = "" if site else f" (--lmcache-site or {LMCACHE_SITE_ENV} may name a venv's)"
        print(f"(LMCache native skipped: {how}{hint})")
        return None
    print(f"(LMCache native: {how})")
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


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    """One server the contenders run against."""

    label: str  # "redis 7.0.15", "valkey 8.0.1 io-threads 2"
    options: ConnectionOptions
    unix_path: str | None
    pid: int | None


def server_args(binary: str, io_threads: int | None) -> list[str]:
    """recommended_args(), with ``io_threads`` instead of its own choice when given."""
    if io_threads is None:
        return recommended_args()
    args = ["--save", "", "--appendonly", "no", "--io-threads", str(io_threads)]
    if "valkey" not in os.path.basename(binary):
        args += ["--io-threads-do-reads", "yes"]  # Redis 6/7 read on the main thread else
    return args


def parse_server(text: str) -> tuple[str, int | None]:
    binary, _, extra = text.partition(":")
    if extra and not (extra.startswith("io=") and extra[3:].isdigit()):
        raise SystemExit(f"server {text!r}: expected BINARY or BINARY:io=N")
    return binary or "redis-server", int(extra[3:]) if extra else None


@contextlib.contextmanager
def servers_from_args(args: argparse.Namespace) -> Iterator[list[Server]]:
    if args.url:
        import respkv.config

        options = respkv.config.resolve(args.url)
        yield [Server(_server_version(options), options, None, None)]
        return
    texts = args.servers or [
        (args.server_binary or "redis-server")
        + (f":io={args.io_threads}" if args.io_threads is not None else "")
    ]
    with contextlib.ExitStack() as stack:
        found = []
        for text in texts:
            binary, io_threads = parse_server(text)
            local = LocalServer(
                binary=binary, args=server_args(binary, io_threads), unix_socket=True
            )
            stack.enter_context(local)
            assert local.process is not None
            options = ConnectionOptions(host=local.host, port=local.port)
            label = _server_version(options) + (
                f" io-threads {io_threads}" if io_threads is not None else ""
            )
            found.append(Server(label, options, local.unix_path, local.process.pid))
        yield found


# --------------------------------------------------------------------------- runs


@dataclass
class Entry:
    """One contender against one server, under the name the tables show."""

    name: str
    contender: BulkContender
    server: Server


def run_cell(entries: Sequence[Entry], cell: Cell, rounds: int) -> None:
    keys = [f"scl:{cell.chunk_bytes}:{i}" for i in range(cell.num_keys)]
    src = make_values(cell.num_keys, cell.chunk_bytes)
    dst = [bytearray(cell.chunk_bytes) for _ in range(cell.num_keys)]
    zero = bytes(cell.chunk_bytes)
    for e in entries:  # untimed warm-up: connections made, threads running
        e.contender.set(keys, src)
    for r in range(rounds):
        for e in rotated(entries, r):
            who, pid = e.contender, e.server.pid
            flush(e.server.options)
            fresh, _ = measured(partial(who.set, keys, src), pid)
            over, _ = measured(partial(who.set, keys, src), pid)
            for buf in dst:
                buf[:] = zero
            got, finish = measured(partial(who.get, keys, dst), pid)
            finish()
            check_equal(src, dst, e.name)
            per_op = cell.samples.setdefault(e.name, {})
            for op, s in zip(OPS, (fresh, over, got), strict=True):
                per_op.setdefault(op, []).append(s)
    for e in entries:  # the servers' memory back before the next cell
        flush(e.server.options)


def entry_names(specs: Sequence[Spec], servers: Sequence[Server]) -> dict[tuple[int, int], str]:
    many = len(servers) > 1
    return {
        (i, j): f"{spec.label} @ {server.label}" if many else spec.label
        for j, server in enumerate(servers)
        for i, spec in enumerate(specs)
    }


def baselines(specs: Sequence[Spec], servers: Sequence[Server]) -> dict[str, str]:
    """Each contender's baseline: the first LMCache contender on its server."""
    names = entry_names(specs, servers)
    lm = next((i for i, s in enumerate(specs) if s.kind == "lmcache"), None)
    if lm is None:
        return {}
    return {name: names[lm, j] for (i, j), name in names.items()}


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="use this running server (TCP contenders only)")
    parser.add_argument("--servers", nargs="+", help="throwaway servers: BINARY[:io=N] ...")
    parser.add_argument("--server-binary", help="the one throwaway server (no --servers)")
    parser.add_argument("--io-threads", type=int, help="its io-threads (no --servers)")
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


def run_grid(
    args: argparse.Namespace, specs: Sequence[Spec], servers: Sequence[Server], lmcache: Any
) -> list[Cell]:
    names = entry_names(specs, servers)
    cells: list[Cell] = []
    t0 = time.monotonic()
    for chunk_mib in (float(s) for s in args.sizes.split(",")):
        chunk = round(chunk_mib * MIB)
        keys = max(1, round(args.batch_mib * MIB / chunk))
        for workers in (int(w) for w in args.workers.split(",")):
            cell = Cell(chunk, keys, workers)
            entries: list[Entry] = []
            try:
                for (i, j), name in names.items():
                    server = servers[j]
                    contender = make_contender(
                        specs[i], server.options, server.unix_path, workers, lmcache
                    )
                    entries.append(Entry(name, contender, server))
                run_cell(entries, cell, args.rounds)
            finally:
                for e in entries:
                    e.contender.close()
            cells.append(cell)
            print(
                f"  {chunk_mib:g} MiB x {workers} workers done "
                f"({time.monotonic() - t0:.0f} s, load {os.getloadavg()[0]:.2f})",
                file=sys.stderr,
            )
    return cells


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    specs = [parse_spec(t) for t in args.contenders]
    lmcache = load_lmcache(args.lmcache_site) if any(s.kind == "lmcache" for s in specs) else None
    specs = [s for s in specs if s.kind != "lmcache" or lmcache is not None]
    if args.url and any(s.unix for s in specs):
        raise SystemExit("@unix contenders need a throwaway server (no --url)")
    info = machine()
    t0 = time.monotonic()
    with servers_from_args(args) as servers:
        print(
            f"scaling on {info['cpus']} CPUs ({info['cpu_model']}), "
            f"{' / '.join(s.label for s in servers)}, {args.rounds} rounds alternating, "
            f"load {os.getloadavg()[0]:.2f}"
        )
        cells = run_grid(args, specs, servers, lmcache)
        names = list(entry_names(specs, servers).values())
        ratios = report(cells, names, baselines(specs, servers), args.probe)
        rounds_paired = print_paired(cells, names, baselines(specs, servers))
        labels = [s.label for s in servers]
    print(f"\n({time.monotonic() - t0:.0f} s; load average now {os.getloadavg()[0]:.2f})")
    write_json(
        args.json,
        {
            "benchmark": "scaling",
            "machine": info,
            "servers": labels,
            "rounds": args.rounds,
            "contenders": names,
            "cells": [cell_json(c) for c in cells],
            "ratios": ratios,
            "paired": rounds_paired,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
