"""What every benchmark script shares: a server, timing, contenders, tables.

Rules all scripts follow, so their figures can be compared and trusted:

* Contenders run *alternating in one process* (A B C A B C ..., the order rotated every
  round), so a noisy neighbour or a frequency change hits all of them alike; each
  reports the median over its rounds.
* Every GET is verified byte for byte after the timed call, outside the timing.
* The server is a throwaway local one (``respkv.testing.servers.LocalServer`` with
  ``recommended_args()``) unless ``--url`` names another, so a bigger host runs the
  same scripts unchanged.
* Units: GiB/s is 2**30 bytes per second; MiB is 2**20 bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import respkv
from respkv._admin import AdminConnection
from respkv._options import ConnectionOptions
from respkv.client import Client
from respkv.testing.servers import LocalServer, recommended_args

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` took, and its result."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def rotated(items: Sequence[Any], round_index: int) -> list[Any]:
    """``items`` rotated by the round number: every contender gets every position."""
    if not items:
        return []
    k = round_index % len(items)
    return list(items[k:]) + list(items[:k])


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def server_version(options: ConnectionOptions) -> str:
    with AdminConnection(options, timeout=5) as admin:
        raw = admin.command("INFO", "server")
    info = dict(
        line.split(":", 1) for line in raw.decode().splitlines() if ":" in line and line[0] != "#"
    )
    name = info.get("server_name", "redis")
    return f"{name} {info.get('valkey_version') or info.get('redis_version', '?')}"


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="use this server instead of a throwaway local one")
    parser.add_argument("--server-binary", help="redis-server (default) or valkey-server")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


@contextmanager
def server_from_args(args: argparse.Namespace) -> Iterator[ConnectionOptions]:
    """The server named by ``--url``, or a throwaway local one (recommended flags)."""
    if args.url:
        yield respkv.config.resolve(args.url)
        return
    with LocalServer(binary=args.server_binary, args=recommended_args()) as server:
        yield ConnectionOptions(host=server.host, port=server.port)


def respkv_backends() -> list[str]:
    """``native`` (when it loads) and ``python``."""
    from respkv._backend import load_native

    names = []
    try:
        load_native()
        names.append("native")
    except ImportError as exc:
        print(f"(respkv native backend not available: {exc})")
    names.append("python")
    return names


def open_respkv(options: ConnectionOptions, backend: str, **changes: Any) -> Client:
    return respkv.connect(options.replace(**changes), backend=backend)


def make_values(count: int, size: int) -> list[bytearray]:
    """Distinct values (see respkv.cli._measure.make_chunks)."""
    from respkv.cli._measure import make_chunks

    return make_chunks(count, size)


def check_equal(expected: Sequence[bytearray], got: Sequence[bytearray], who: str) -> None:
    bad = sum(1 for a, b in zip(expected, got, strict=True) if a != b)
    if bad:
        raise SystemExit(f"{who}: {bad} of {len(expected)} values did not verify")


def flush(options: ConnectionOptions) -> None:
    with AdminConnection(options, timeout=30) as admin:
        admin.command("FLUSHALL")


def run_tool(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Table:
    """A plain text table with right-aligned numbers."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]

    def render(self) -> str:
        widths = [
            max(len(str(h)), *(len(str(r[i])) for r in self.rows)) if self.rows else len(h)
            for i, h in enumerate(self.headers)
        ]
        lines = [
            "  ".join(
                f"{h:<{w}}" if i == 0 else f"{h:>{w}}"
                for i, (h, w) in enumerate(zip(self.headers, widths, strict=True))
            )
        ]
        lines.append("  ".join("-" * w for w in widths))
        for row in self.rows:
            lines.append(
                "  ".join(
                    f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
        return "\n".join(lines)


def write_json(path: str | None, doc: dict[str, Any]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"(JSON written to {path})")


def gib(bps: float) -> str:
    return "-" if math.isnan(bps) else f"{bps / GIB:.2f}"  # NaN: a contender is missing
