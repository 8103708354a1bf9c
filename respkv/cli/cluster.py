"""The cluster pieces of the ``respkv`` command: ``server --cluster N`` and ``bench --cluster``.

``respkv server --cluster N [--replicas R]`` starts a throwaway local cluster
(:class:`respkv.testing.clusters.LocalCluster`: N masters, R replicas each, free loopback
ports, formed with ``redis-cli --cluster create``) with the same server flags as a
single ``respkv server``, prints its ``resp+cluster://`` URL (every node a seed) as the
first line of stdout once every node reports a healthy cluster, and runs until Ctrl-C
or SIGTERM, or until a node exits by itself (exit status 1).

``respkv bench --cluster [N]`` runs the benchmark on a throwaway N-master cluster (no
replicas; default 3) instead of a throwaway server; a named cluster
(``--url resp+cluster://...``) works without the flag. Either way, after the usual
report it prints each master's share: the keys it served, and its part of the
aggregate rate (the masters serve one batch at once, so a master's rate is its share of
the bytes over the batch's time).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from respkv.cli._common import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from respkv.cli._measure import BenchReport
    from respkv.cli._target import Target
    from respkv.client import Client

__all__ = [
    "DEFAULT_BENCH_MASTERS",
    "add_bench_flag",
    "add_server_flags",
    "cluster_target",
    "per_master",
    "per_master_lines",
    "run_cluster_server",
]

#: Masters of ``respkv bench --cluster`` without a number (the usual smallest cluster).
DEFAULT_BENCH_MASTERS: Final = 3
#: Most masters or replicas per master a local cluster may have here (ports, processes).
MAX_LOCAL_NODES: Final = 64


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_LOCAL_NODES:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_LOCAL_NODES}, got {value}")
    return value


def _replicas(text: str) -> int:
    return 0 if text.strip() == "0" else _count(text)


def add_server_flags(p: argparse.ArgumentParser) -> None:
    """``--cluster N`` and ``--replicas R`` for ``respkv server``."""
    p.add_argument(
        "--cluster",
        type=_count,
        default=None,
        metavar="N",
        help="start a local cluster of N masters instead of one server (free ports; "
        "prints a resp+cluster:// URL)",
    )
    p.add_argument(
        "--replicas",
        type=_replicas,
        default=0,
        metavar="R",
        help="replicas per master with --cluster",
    )


def add_bench_flag(p: argparse.ArgumentParser) -> None:
    """``--cluster [N]`` for ``respkv bench``."""
    p.add_argument(
        "--cluster",
        type=_count,
        nargs="?",
        const=DEFAULT_BENCH_MASTERS,
        default=None,
        metavar="N",
        help=f"benchmark a throwaway local cluster of N masters (default {DEFAULT_BENCH_MASTERS}) "
        "instead of a throwaway server; per-master figures follow the report",
    )


def _start(
    masters: int, replicas: int, *, binary: str | None, host: str, flags: list[str], password: str
) -> Any:
    from respkv.errors import ServerNotFoundError
    from respkv.testing.clusters import LocalCluster

    cluster = LocalCluster(masters=masters, replicas=replicas, binary=binary, host=host,
                           args=flags, password=password)  # fmt: skip
    try:
        return cluster.start()
    except ServerNotFoundError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except (RuntimeError, OSError, TimeoutError) as exc:
        raise CliError(f"could not start a local cluster: {exc}", EXIT_UNAVAILABLE) from None


def run_cluster_server(args: argparse.Namespace, flags: list[str]) -> int:
    """``respkv server --cluster N``: run a local cluster in the foreground."""
    if args.port:
        raise CliError("--port cannot be used with --cluster (each node takes a free port)",
                       EXIT_USAGE)  # fmt: skip
    cluster = _start(
        args.cluster,
        args.replicas,
        binary=args.server_binary,
        host=args.bind,
        flags=flags,
        password=args.requirepass or "",
    )
    try:
        print(f"resp+cluster://{','.join(cluster.seeds)}", flush=True)  # never the password
        binary = os.path.basename(cluster.nodes[0].server.binary or "redis-server")
        auth = "; clients must give the --requirepass password" if args.requirepass else ""
        print(f"respkv server: a {args.cluster}-master cluster ({args.replicas} replicas each) of "
              f"{binary} on {len(cluster.nodes)} ports{auth}; Ctrl-C stops it",
              file=sys.stderr, flush=True)  # fmt: skip
        return _wait_for_an_exit(cluster)
    except KeyboardInterrupt:
        print("respkv server: stopping the cluster", file=sys.stderr)
        return EXIT_OK
    finally:
        cluster.stop()


def _wait_for_an_exit(cluster: Any) -> int:
    """Block until a node's process exits (the cluster is then broken): exit status 1."""
    import select

    # Each node's process has a pidfd on Linux; fall back to waiting on the first one.
    fds = []
    try:
        fds = [os.pidfd_open(n.server.process.pid) for n in cluster.nodes]
        select.select(fds, [], [])
    except (AttributeError, OSError):
        cluster.nodes[0].server.process.wait()
    finally:
        for fd in fds:
            os.close(fd)
    dead = [n for n in cluster.nodes if not n.alive]
    name = dead[0].address if dead else "a node"
    log = dead[0].server.log[-2000:] if dead else ""
    print(f"respkv server: the node at {name} exited:\n{log}", file=sys.stderr)
    return EXIT_FAILED


@contextmanager
def cluster_target(args: argparse.Namespace) -> Iterator[Target]:
    """A throwaway N-master cluster (no replicas) for ``respkv bench --cluster N``."""
    from respkv._cluster.options import ClusterOptions
    from respkv.cli._target import Target, named_by, preflight
    from respkv.testing.servers import recommended_args

    if named_by(args) is not None:
        raise CliError(
            "--cluster starts a throwaway cluster: leave out --host/--port/--url "
            "(a named cluster needs no flag: --url resp+cluster://...)",
            EXIT_USAGE,
        )
    cluster = _start(
        args.cluster, 0, binary=args.server_binary, host="127.0.0.1", flags=recommended_args(),
        password="",
    )  # fmt: skip
    try:
        options = ClusterOptions.from_seeds(cluster.seeds)
        name = preflight(options)
        print(f"respkv {args.command}: started a throwaway {args.cluster}-master cluster of "
              f"{name} at {','.join(cluster.seeds)} (stopped at the end)",
              file=sys.stderr, flush=True)  # fmt: skip
        yield Target(options, f"{name} cluster of {args.cluster} masters")
    finally:
        cluster.stop()


def per_master(client: Client, report: BenchReport) -> dict[str, dict[str, float]] | None:
    """Each master's keys and share of the aggregate SET/GET rates, or None (one server)."""
    from respkv._cluster.router import ClusterConnector

    conn = client.connector
    if not isinstance(conn, ClusterConnector):
        return None
    sent = conn.node_keys()
    total = sum(sent.values()) or 1
    out = {}
    for address, keys in sorted(sent.items()):
        share = keys / total
        out[address] = {
            "share": share,
            "keys_per_run": share * report.config.num_keys,
            "set_bytes_per_s": share * report.set.bytes_per_s,
            "get_bytes_per_s": share * report.get.bytes_per_s,
        }
    return out


def per_master_lines(figures: dict[str, dict[str, float]]) -> str:
    """The per-master part of the text report."""
    gib = 2**30
    lines = [f"Cluster: {len(figures)} masters (a master's rate: its share of the bytes, "
             "over the batch's time)"]  # fmt: skip
    for address, f in figures.items():
        lines.append(
            f"  {address}: {f['keys_per_run']:.0f} keys ({f['share']:.0%}), "
            f"SET {f['set_bytes_per_s'] / gib:.2f} GB/s, GET {f['get_bytes_per_s'] / gib:.2f} GB/s"
        )
    return "\n".join(lines)
